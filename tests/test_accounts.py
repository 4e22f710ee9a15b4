from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts import services
from accounts.models import Account
from execution.models import ExecutionEvent
from tests.factories import (
    DEMO_V1_API_KEY,
    DEMO_V1_API_SECRET,
    DEMO_V3_PRIVATE_KEY,
    DEMO_V3_SIGNER,
    DEMO_V3_USER,
    LiveV1AccountFactory,
    LiveV3AccountFactory,
)

pytestmark = pytest.mark.django_db

V3_FIELDS = {
    "is_paper_trading": False,
    "api_version": "v3",
    "wallet_address": DEMO_V3_USER,
    "signer_address": DEMO_V3_SIGNER,
    "signer_private_key": DEMO_V3_PRIVATE_KEY,
}
V1_FIELDS = {
    "is_paper_trading": False,
    "api_version": "v1",
    "api_key": DEMO_V1_API_KEY,
    "api_secret": DEMO_V1_API_SECRET,
}


def assert_refused(user, field: str, **fields) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        services.create_account(owner=user, name="acct", **fields)
    assert field in caught.value.message_dict, caught.value.message_dict
    assert Account.objects.count() == 0
    assert ExecutionEvent.objects.count() == 0
    return caught.value


def test_create_paper_account_is_audited(user):
    account = services.create_account(owner=user, name="paper", paper_balance=Decimal("5000"))
    assert account.is_paper_trading and account.trading_state == "active"
    event = ExecutionEvent.objects.get(kind="account.created")
    assert event.account == account


@pytest.mark.parametrize("leverage", [0, 26, 125])
def test_max_leverage_outside_1_to_25_is_refused(user, leverage):
    assert_refused(user, "max_leverage", max_leverage=leverage)


def test_negative_cooldown_is_refused(user):
    assert_refused(user, "cooldown_seconds", cooldown_seconds=-1)


def test_negative_paper_balance_is_refused(user):
    assert_refused(user, "paper_balance", paper_balance=Decimal("-0.01"))


def test_live_account_without_credentials_is_refused(user):
    assert_refused(user, "api_version", is_paper_trading=False)


def test_live_v1_account_with_half_a_key_pair_is_refused(user):
    assert_refused(user, "api_secret", is_paper_trading=False, api_version="v1", api_key=DEMO_V1_API_KEY)


@pytest.mark.parametrize("bad_key", ["0x1234", "zz" * 32, DEMO_V3_PRIVATE_KEY + "00", "not a key"])
def test_malformed_v3_private_key_is_refused_without_echoing_it(user, bad_key):
    error = assert_refused(user, "signer_private_key", **{**V3_FIELDS, "signer_private_key": bad_key})
    assert bad_key not in str(error)


def test_v3_signer_address_that_does_not_match_the_key_is_refused(user):
    wrong = "0x" + "1" * 40
    error = assert_refused(user, "signer_address", **{**V3_FIELDS, "signer_address": wrong})
    assert "Does not match" in str(error)


def test_v3_wallet_address_must_be_an_address(user):
    assert_refused(user, "wallet_address", **{**V3_FIELDS, "wallet_address": "me"})


def test_valid_live_accounts_are_created(user):
    v1 = services.create_account(owner=user, name="v1", **V1_FIELDS)
    v3 = services.create_account(owner=user, name="v3", **{**V3_FIELDS, "signer_address": DEMO_V3_SIGNER.lower()})
    v1.refresh_from_db()
    v3.refresh_from_db()
    assert v1.api_secret.reveal() == DEMO_V1_API_SECRET
    assert v3.signer_private_key.reveal() == DEMO_V3_PRIVATE_KEY


def test_unknown_field_is_refused(user):
    assert_refused(user, "owner_id", owner_id=5)


def test_update_revalidates_the_whole_account_and_writes_nothing_on_error():
    account = LiveV3AccountFactory()
    with pytest.raises(ValidationError) as caught:
        services.update_account(account=account, signer_private_key="0x" + "ab" * 32)
    assert "signer_address" in caught.value.message_dict
    account.refresh_from_db()
    assert account.signer_private_key.reveal() == DEMO_V3_PRIVATE_KEY


def test_database_refuses_leverage_above_25_even_without_the_service(paper_account):
    paper_account.max_leverage = 26
    with pytest.raises(IntegrityError), transaction.atomic():
        paper_account.save()


def raw_row(account_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_account WHERE id = %s", [account_id])
        return repr(cursor.fetchone())


def test_secrets_are_encrypted_in_the_database_row():
    v1 = LiveV1AccountFactory()
    v3 = LiveV3AccountFactory()
    row = raw_row(v1.pk) + raw_row(v3.pk)
    for secret in (DEMO_V1_API_SECRET, DEMO_V1_API_KEY, DEMO_V3_PRIVATE_KEY, DEMO_V3_PRIVATE_KEY[2:]):
        assert secret not in row
    assert "gAAAAA" in row  # Fernet tokens


def test_secrets_do_not_appear_in_repr_or_str():
    account = LiveV1AccountFactory()
    account.refresh_from_db()
    texts = [repr(account), str(account), repr(account.api_secret), str(account.api_secret), f"{account.api_secret}"]
    texts.append(repr(account.__dict__))
    for text in texts:
        assert DEMO_V1_API_SECRET not in text
        assert DEMO_V1_API_KEY not in text


def test_audit_event_records_that_a_secret_was_set_not_its_value(user):
    services.create_account(owner=user, name="v1", **V1_FIELDS)
    event = ExecutionEvent.objects.get(kind="account.created")
    assert event.data["api_secret"] == "set"
    assert DEMO_V1_API_SECRET not in repr(event.data)


def test_secrets_cannot_be_pickled():
    import pickle

    account = LiveV1AccountFactory()
    with pytest.raises(TypeError):
        pickle.dumps(account.api_secret)


def test_key_rotation_re_encrypts_under_the_new_key(settings):
    from cryptography.fernet import Fernet

    account = LiveV3AccountFactory()
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert services.rotate_field_encryption() == 1
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone: rows must still decrypt
    account.refresh_from_db()
    assert account.signer_private_key.reveal() == DEMO_V3_PRIVATE_KEY


def test_undecryptable_secret_fails_with_a_message_that_holds_no_key_material(settings):
    from cryptography.fernet import Fernet

    account = LiveV1AccountFactory()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError) as caught:
        Account.objects.get(pk=account.pk)
    assert "cannot be decrypted" in str(caught.value)
    assert "gAAAA" not in str(caught.value)


def test_set_trading_state_is_audited_and_validated(paper_account):
    services.set_trading_state(account=paper_account, state="halted", reason="ops")
    event = ExecutionEvent.objects.get(kind="account.trading_state")
    assert (event.from_status, event.to_status) == ("active", "halted")
    with pytest.raises(ValidationError):
        services.set_trading_state(account=paper_account, state="paused")


def test_the_admin_form_shows_owner_then_the_editable_fields_in_their_order():
    from accounts.admin import AccountAdminForm

    assert isinstance(services.EDITABLE_FIELDS, tuple)
    assert len(set(services.EDITABLE_FIELDS)) == len(services.EDITABLE_FIELDS)
    assert AccountAdminForm._meta.fields == ["owner", *services.EDITABLE_FIELDS]
    assert list(AccountAdminForm.base_fields) == ["owner", *services.EDITABLE_FIELDS]
