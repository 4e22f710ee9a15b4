"""Account lifecycle through the API: create a paper account, reset it, set and rotate live
credentials (write-only), and the staff-only switch from paper to live."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Account, ExecutionEvent
from decisions.services import submit_decision
from execution.models import PendingOrder, Position
from tests.factories import (
    DEMO_V1_API_KEY,
    DEMO_V1_API_SECRET,
    DEMO_V3_PRIVATE_KEY,
    DEMO_V3_SIGNER,
    DEMO_V3_USER,
    LiveV1AccountFactory,
    PaperAccountFactory,
    UserFactory,
)
from tests.test_api_controls import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def api(owner):
    return client_for(owner)


def test_create_a_paper_account(api, owner):
    response = api.post("/api/accounts/", {"name": "swing", "paper_balance": "2500", "max_leverage": 10}, format="json")
    assert response.status_code == 201, response.content
    account = Account.objects.get(pk=response.data["id"])
    assert account.owner == owner and account.is_paper_trading and account.paper_balance == Decimal("2500")
    assert response.data["paper_wallet"] == "2500.0000000000" and response.data["mode"] == "paper"
    assert ExecutionEvent.objects.filter(kind="account.created", account=account).exists()
    assert APIClient().post("/api/accounts/", {"name": "x"}, format="json").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "a", "paper_balance": "-1"},
        {"name": "a", "max_leverage": 26},
        {"name": "a", "is_paper_trading": False, "paper_balance": "x"},
        {"name": 5},
    ],
)
def test_create_bad_input_is_400_and_writes_nothing(api, body):
    response = api.post("/api/accounts/", body, format="json")
    assert response.status_code == 400
    assert not Account.objects.exists()


def test_create_ignores_a_mode_it_does_not_take(api):
    response = api.post("/api/accounts/", {"name": "p", "is_paper_trading": False}, format="json")
    assert response.status_code == 201 and response.data["is_paper_trading"] is True


def test_reset_closes_everything_and_resets_the_wallet(api, owner, market):
    account = PaperAccountFactory(owner=owner)
    submit_decision(
        account=account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.02"),
        leverage=5,
        stop_loss=Decimal("60000"),
        idempotency_key="r1",
    )
    account.refresh_from_db()
    assert account.paper_realized_pnl != 0  # the entry fee
    response = api.post(f"/api/accounts/{account.pk}/reset/", {"paper_balance": "5000"}, format="json")
    assert response.status_code == 200, response.content
    account.refresh_from_db()
    assert account.paper_balance == Decimal("5000") and account.paper_realized_pnl == 0
    assert not Position.objects.filter(account=account, status="open").exists()
    assert not PendingOrder.objects.filter(account=account, status="pending").exists()
    assert ExecutionEvent.objects.filter(kind="account.reset", account=account).exists()


def test_reset_refusals(api, owner):
    live = LiveV1AccountFactory(owner=owner)
    response = api.post(f"/api/accounts/{live.pk}/reset/", {}, format="json")
    assert response.status_code == 409 and response.data["code"] == "PAPER_ONLY"
    paper = PaperAccountFactory(owner=owner)
    assert api.post(f"/api/accounts/{paper.pk}/reset/", {"paper_balance": "-5"}, format="json").status_code == 400
    other = PaperAccountFactory(owner=UserFactory())
    assert api.post(f"/api/accounts/{other.pk}/reset/", {}, format="json").status_code == 404
    assert APIClient().post(f"/api/accounts/{paper.pk}/reset/", {}, format="json").status_code == 401
    assert not ExecutionEvent.objects.filter(kind="account.reset").exists()


def test_credentials_are_write_only_and_validated(api, owner):
    account = PaperAccountFactory(owner=owner)
    body = {"api_version": "v1", "api_key": DEMO_V1_API_KEY, "api_secret": DEMO_V1_API_SECRET}
    response = api.post(f"/api/accounts/{account.pk}/credentials/", body, format="json")
    assert response.status_code == 200, response.content
    assert DEMO_V1_API_SECRET not in response.content.decode() and DEMO_V1_API_KEY not in response.content.decode()
    assert response.data["credentials"]["api_secret"] == "set"
    account.refresh_from_db()
    assert account.api_secret.reveal() == DEMO_V1_API_SECRET
    events = ExecutionEvent.objects.filter(kind="account.updated", account=account)
    assert events.exists() and DEMO_V1_API_SECRET not in str(list(events.values("data", "message")))
    rotated = {
        "api_version": "v3",
        "wallet_address": DEMO_V3_USER,
        "signer_address": DEMO_V3_SIGNER,
        "signer_private_key": DEMO_V3_PRIVATE_KEY,
    }
    response = api.post(f"/api/accounts/{account.pk}/credentials/", rotated, format="json")
    assert response.status_code == 200 and response.data["api_version"] == "v3"
    assert DEMO_V3_PRIVATE_KEY not in response.content.decode()
    account.refresh_from_db()
    assert account.api_secret.reveal() == ""  # the other scheme's secrets are cleared


@pytest.mark.parametrize(
    "body",
    [
        {"api_version": "v1", "api_key": "short"},
        {
            "api_version": "v3",
            "wallet_address": DEMO_V3_USER,
            "signer_address": DEMO_V3_USER,
            "signer_private_key": DEMO_V3_PRIVATE_KEY,
        },
        {"api_version": "v2"},
        {"api_version": "v1", "api_key": DEMO_V1_API_KEY, "api_secret": DEMO_V1_API_SECRET, "wallet_address": "0x1"},
    ],
)
def test_bad_credentials_are_400_and_write_nothing(api, owner, body):
    account = PaperAccountFactory(owner=owner)
    response = api.post(f"/api/accounts/{account.pk}/credentials/", body, format="json")
    assert response.status_code == 400
    assert DEMO_V3_PRIVATE_KEY not in response.content.decode()
    account.refresh_from_db()
    assert account.api_version == "" and not ExecutionEvent.objects.filter(kind="account.updated").exists()


def test_switch_to_live_is_staff_only_and_audited(owner, api):
    account = PaperAccountFactory(owner=owner)
    body = {"api_version": "v1", "api_key": DEMO_V1_API_KEY, "api_secret": DEMO_V1_API_SECRET}
    assert api.post(f"/api/accounts/{account.pk}/credentials/", body, format="json").status_code == 200
    assert api.post(f"/api/accounts/{account.pk}/switch-to-live/").status_code == 403
    owner.is_staff = True
    owner.save()
    response = api.post(f"/api/accounts/{account.pk}/switch-to-live/")
    assert response.status_code == 200 and response.data["mode"] == "live"
    event = ExecutionEvent.objects.get(kind="account.switched_to_live")
    assert event.data == {"by_user": owner.pk} and event.to_status == "live"
    again = api.post(f"/api/accounts/{account.pk}/switch-to-live/")
    assert again.status_code == 400


def test_switch_to_live_without_credentials_is_400(owner, api):
    owner.is_staff = True
    owner.save()
    account = PaperAccountFactory(owner=owner)
    response = api.post(f"/api/accounts/{account.pk}/switch-to-live/")
    assert response.status_code == 400 and "api_version" in response.data
    account.refresh_from_db()
    assert account.is_paper_trading
    other = PaperAccountFactory(owner=UserFactory())
    assert api.post(f"/api/accounts/{other.pk}/switch-to-live/").status_code == 404
