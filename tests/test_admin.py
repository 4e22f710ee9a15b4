import pytest
from django.contrib.auth import get_user_model

from accounts.models import Account
from tests.factories import (
    DEMO_V1_API_KEY,
    DEMO_V1_API_SECRET,
    DEMO_V3_PRIVATE_KEY,
    LiveV1AccountFactory,
    LiveV3AccountFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.test", "pw-admin-123")
    client.force_login(admin)
    client.admin_user = admin
    return client


def test_account_change_page_shows_secret_state_not_value(admin_client):
    v1 = LiveV1AccountFactory()
    v3 = LiveV3AccountFactory()
    for account in (v1, v3):
        html = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
        assert "Currently set" in html
        for secret in (DEMO_V1_API_SECRET, DEMO_V1_API_KEY, DEMO_V3_PRIVATE_KEY, DEMO_V3_PRIVATE_KEY[2:]):
            assert secret not in html
    listing = admin_client.get("/admin/accounts/account/").content.decode()
    assert "api_secret: set" in listing
    assert DEMO_V1_API_SECRET not in listing


def form_data(admin_client, **overrides):
    data = {
        "owner": admin_client.admin_user.pk,
        "name": "from-admin",
        "is_paper_trading": "",
        "trading_state": "active",
        "max_leverage": "10",
        "cooldown_seconds": "0",
        "paper_balance": "0",
        "margin_type": "ISOLATED",
        "api_version": "v1",
        "api_key": DEMO_V1_API_KEY,
        "api_secret": DEMO_V1_API_SECRET,
        "wallet_address": "",
        "signer_address": "",
        "signer_private_key": "",
    }
    data.update(overrides)
    return data


def test_admin_add_goes_through_the_service_and_is_audited(admin_client):
    response = admin_client.post("/admin/accounts/account/add/", form_data(admin_client))
    assert response.status_code == 302, response.content.decode()[:2000]
    account = Account.objects.get(name="from-admin")
    assert account.api_secret.reveal() == DEMO_V1_API_SECRET
    assert account.events.filter(kind="account.created").exists()


def test_admin_add_with_half_a_key_pair_shows_the_field_error_and_saves_nothing(admin_client):
    response = admin_client.post("/admin/accounts/account/add/", form_data(admin_client, api_secret=""))
    assert response.status_code == 200
    assert "API key and secret come as a pair" in response.content.decode()
    assert not Account.objects.exists()


def test_admin_edit_with_blank_secret_keeps_the_stored_one(admin_client):
    account = LiveV1AccountFactory(owner=admin_client.admin_user)
    data = form_data(admin_client, name=account.name, api_key="", api_secret="", max_leverage="5")
    response = admin_client.post(f"/admin/accounts/account/{account.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.max_leverage == 5
    assert account.api_secret.reveal() == DEMO_V1_API_SECRET


@pytest.mark.parametrize(
    "path", ["execution/position", "execution/trade", "execution/pendingorder", "accounts/executionevent"]
)
def test_execution_pages_are_read_only_and_render(admin_client, path):
    response = admin_client.get(f"/admin/{path}/?mode=paper")
    assert response.status_code == 200
    assert admin_client.get(f"/admin/{path}/add/").status_code == 403


def test_decision_admin_renders(admin_client):
    assert admin_client.get("/admin/decisions/decision/").status_code == 200


def test_stream_pages_render_with_rows_and_are_read_only(admin_client):
    from decimal import Decimal

    from django.utils import timezone

    from execution.models import ExchangeFill, Heartbeat, StreamLease, StreamStatus
    from tests.factories import LiveV1AccountFactory

    account = LiveV1AccountFactory()
    now = timezone.now()
    StreamStatus.objects.create(
        name=f"user:{account.pk}", kind="user", account=account, connected=True, last_frame_at=now, updated_at=now
    )
    StreamLease.objects.create(account=account, holder="host:1", acquired_at=now, expires_at=now)
    ExchangeFill.objects.create(
        account=account,
        symbol="BTCUSDT",
        exchange_order_id="7",
        exchange_trade_id="9",
        side="SELL",
        quantity=Decimal("0.0100000000"),
        price=Decimal("65000.5000000000"),
    )
    Heartbeat.objects.create(name="paper_sweep", beat_at=now)
    for path in ("streamstatus", "streamlease", "exchangefill", "heartbeat"):
        page = admin_client.get(f"/admin/execution/{path}/")
        assert page.status_code == 200, path
        assert admin_client.get(f"/admin/execution/{path}/add/").status_code == 403, path
    assert "65000.5<" in admin_client.get("/admin/execution/exchangefill/").content.decode()


def test_admin_edit_with_a_typed_secret_replaces_it_and_audits_the_change(admin_client):
    """Blank secret inputs count as unchanged (tests/test_admin_render.py); a typed one is a change."""
    account = LiveV1AccountFactory(owner=admin_client.admin_user)
    rotated = DEMO_V1_API_SECRET[::-1]
    data = form_data(admin_client, name=account.name, api_key="", api_secret=rotated)
    response = admin_client.post(f"/admin/accounts/account/{account.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.api_secret.reveal() == rotated
    assert account.api_key.reveal() == DEMO_V1_API_KEY
    event = account.events.get(kind="account.updated")
    assert "api_secret" in str(event.data) and "api_key" not in str(event.data)
    assert rotated not in str(event.data)
