from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Account

# The published V3 demo credentials (ASTER_API.md section 9b): for tests only.
DEMO_V3_USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
DEMO_V3_SIGNER = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0"
DEMO_V3_PRIVATE_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"
# The published V1 HMAC test-vector key pair (ASTER_API.md section 9a).
DEMO_V1_API_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
DEMO_V1_API_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"trader{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")


class PaperAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"paper-{n}")
    is_paper_trading = True
    paper_balance = Decimal("10000")
    max_leverage = 25
    cooldown_seconds = 0


class LiveV1AccountFactory(PaperAccountFactory):
    name = factory.Sequence(lambda n: f"live-v1-{n}")
    is_paper_trading = False
    api_version = "v1"
    api_key = DEMO_V1_API_KEY
    api_secret = DEMO_V1_API_SECRET


class LiveV3AccountFactory(PaperAccountFactory):
    name = factory.Sequence(lambda n: f"live-v3-{n}")
    is_paper_trading = False
    api_version = "v3"
    wallet_address = DEMO_V3_USER
    signer_address = DEMO_V3_SIGNER
    signer_private_key = DEMO_V3_PRIVATE_KEY
