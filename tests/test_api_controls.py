"""The trader's controls through the API: close, close-all, protection amends, cancelling a leg,
halt / resume / reduce-only. Each: happy path, another owner's object 404, anonymous 401, bad
input 400 writing nothing, a denial 409 with its code."""

import re
from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ExecutionEvent
from decisions.services import submit_decision
from execution.models import PendingOrder, Position, Trade
from tests.factories import PaperAccountFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def open_long(account, quantity="0.02", key="o1", **protection):
    fields = {"take_profit": Decimal("90000"), "stop_loss": Decimal("60000"), **protection}
    submit_decision(
        account=account,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal(quantity),
        leverage=5,
        idempotency_key=key,
        **fields,
    )
    return Position.objects.get(account=account, status="open", symbol="BTCUSDT")


@pytest.fixture
def world(market):
    owner = UserFactory()
    account = PaperAccountFactory(owner=owner)
    position = open_long(account)
    other = PaperAccountFactory(owner=UserFactory())
    other_position = open_long(other, key="o2")
    return {
        "api": client_for(owner),
        "account": account,
        "position": position,
        "other": other,
        "other_position": other_position,
    }


def counts():
    return (Trade.objects.count(), PendingOrder.objects.count(), ExecutionEvent.objects.count())


# --------------------------------------------------------------------------- close


def test_partial_then_full_close(world):
    api, position = world["api"], world["position"]
    response = api.post(f"/api/positions/{position.pk}/close/", {"quantity": "0.005"}, format="json")
    assert response.status_code == 200, response.content
    assert response.data["trade"]["reduce_only"] and response.data["position"]["quantity"] == "0.0150000000"
    assert ExecutionEvent.objects.filter(kind="position.close_requested", subject_id=position.pk).count() == 1
    response = api.post(f"/api/positions/{position.pk}/close/", {}, format="json")
    assert response.status_code == 200 and response.data["position"]["status"] == "closed"
    again = api.post(f"/api/positions/{position.pk}/close/", {}, format="json")
    assert again.status_code == 409 and again.data["code"] == "NO_POSITION"


def test_close_more_than_held_is_409_invalid_quantity_and_writes_nothing(world):
    before = counts()
    response = world["api"].post(f"/api/positions/{world['position'].pk}/close/", {"quantity": "1"}, format="json")
    assert response.status_code == 409 and response.data["code"] == "INVALID_QUANTITY"
    assert counts() == before


@pytest.mark.parametrize("body", [{"quantity": "-1"}, {"quantity": "0"}, {"quantity": "abc"}, {"quantity": True}])
def test_close_bad_input_is_400_and_writes_nothing(world, body):
    before = counts()
    response = world["api"].post(f"/api/positions/{world['position'].pk}/close/", body, format="json")
    assert response.status_code == 400 and "quantity" in response.data
    assert counts() == before


def test_another_owners_position_is_404_and_anonymous_401(world):
    pk = world["other_position"].pk
    assert world["api"].post(f"/api/positions/{pk}/close/", {}, format="json").status_code == 404
    assert (
        world["api"].patch(f"/api/positions/{pk}/protection/", {"stop_loss": "61000"}, format="json").status_code == 404
    )
    anonymous = APIClient()
    assert anonymous.post(f"/api/positions/{pk}/close/", {}, format="json").status_code == 401
    assert anonymous.patch(f"/api/positions/{pk}/protection/", {}, format="json").status_code == 401
    assert Position.objects.get(pk=pk).status == "open"


def test_close_all(world, market):
    account = world["account"]
    submit_decision(
        account=account, symbol="ETHUSDT", action="open_short", quantity=Decimal("0.5"), leverage=3, idempotency_key="e"
    )
    response = world["api"].post(f"/api/accounts/{account.pk}/close-all/", format="json")
    assert response.status_code == 200, response.content
    assert sorted(response.data["closed"]) == ["BTCUSDT", "ETHUSDT"] and response.data["failures"] == {}
    assert not Position.objects.filter(account=account, status="open").exists()
    assert ExecutionEvent.objects.filter(kind="account.close_all", account=account).exists()
    assert world["api"].post(f"/api/accounts/{world['other'].pk}/close-all/").status_code == 404
    assert APIClient().post(f"/api/accounts/{account.pk}/close-all/").status_code == 401


def test_close_through_the_decision_endpoint_with_nothing_open_is_409_no_position(world):
    api, account = world["api"], world["account"]
    body = {"account": account.pk, "symbol": "ETHUSDT", "action": "close"}
    response = api.post("/api/decisions/", body, format="json")
    assert response.status_code == 409 and response.data["code"] == "NO_POSITION"


# --------------------------------------------------------------------------- protection


def legs(position):
    return {leg.kind: leg for leg in PendingOrder.objects.filter(position=position, status="pending")}


def test_amend_protection_replaces_the_legs(world):
    api, position = world["api"], world["position"]
    old = legs(position)
    response = api.patch(
        f"/api/positions/{position.pk}/protection/",
        {"stop_loss": "61000", "working_type": "CONTRACT_PRICE"},
        format="json",
    )
    assert response.status_code == 200, response.content
    new = legs(position)
    assert new["stop_loss"].trigger_price == Decimal("61000") and new["stop_loss"].working_type == "CONTRACT_PRICE"
    assert new["take_profit"].trigger_price == old["take_profit"].trigger_price  # absent: kept
    assert {leg.pk for leg in new.values()}.isdisjoint(leg.pk for leg in old.values())
    assert all(PendingOrder.objects.get(pk=leg.pk).status == "cancelled" for leg in old.values())
    assert response.data["position"]["stop_loss"] == "61000.0000000000"
    assert ExecutionEvent.objects.filter(kind="position.protection_amended", subject_id=position.pk).exists()
    removed = api.patch(f"/api/positions/{position.pk}/protection/", {"take_profit": None}, format="json")
    assert removed.status_code == 200 and set(legs(position)) == {"stop_loss"}
    assert [leg["kind"] for leg in removed.data["pending_orders"]] == ["stop_loss"]


@pytest.mark.parametrize(
    "body",
    [
        {"stop_loss": "70000"},  # above the mark for a long
        {"take_profit": "50000"},  # below the mark for a long
        {"stop_loss": "52000"},  # beyond the liquidation price of a 5x long (about 52209)
    ],
)
def test_amend_refusals_are_409_invalid_protection_and_keep_the_legs(world, body):
    position = world["position"]
    assert position.liquidation_price > Decimal("52000")
    before = counts()
    response = world["api"].patch(f"/api/positions/{position.pk}/protection/", body, format="json")
    assert response.status_code == 409 and response.data["code"] == "INVALID_PROTECTION", response.data
    assert counts() == before
    # Prices as people write them (the mark is stored with ten decimals): no storage zeros.
    assert not re.search(r"\d\.\d*0\b", str(response.data["detail"])), response.data


@pytest.mark.parametrize("body", [{}, {"stop_loss": "-1"}, {"stop_loss": "x"}, {"working_type": "LAST"}])
def test_amend_bad_input_is_400(world, body):
    before = counts()
    response = world["api"].patch(f"/api/positions/{world['position'].pk}/protection/", body, format="json")
    assert response.status_code == 400
    assert counts() == before


def test_amend_a_closed_position_is_409_no_position(world):
    position = world["position"]
    world["api"].post(f"/api/positions/{position.pk}/close/", {}, format="json")
    response = world["api"].patch(f"/api/positions/{position.pk}/protection/", {"stop_loss": "61000"}, format="json")
    assert response.status_code == 409 and response.data["code"] == "NO_POSITION"


# --------------------------------------------------------------------------- cancel a leg


def test_delete_a_pending_leg(world):
    api, position = world["api"], world["position"]
    take = legs(position)["take_profit"]
    response = api.delete(f"/api/pending-orders/{take.pk}/")
    assert response.status_code == 200 and response.data["status"] == "cancelled"
    position.refresh_from_db()
    assert position.take_profit is None and set(legs(position)) == {"stop_loss"}
    again = api.delete(f"/api/pending-orders/{take.pk}/")
    assert again.status_code == 409 and again.data["code"] == "LEG_NOT_ACTIVE"
    other_leg = PendingOrder.objects.filter(account=world["other"]).first()
    assert api.delete(f"/api/pending-orders/{other_leg.pk}/").status_code == 404
    assert APIClient().delete(f"/api/pending-orders/{other_leg.pk}/").status_code == 401
    assert PendingOrder.objects.get(pk=other_leg.pk).status == "pending"


# --------------------------------------------------------------------------- trading state


def test_halt_resume_reduce_only(world):
    api, account = world["api"], world["account"]
    response = api.post(f"/api/accounts/{account.pk}/halt/", {"reason": "news"}, format="json")
    assert response.status_code == 200 and response.data["trading_state"] == "halted"
    account.refresh_from_db()
    assert account.trading_state == "halted"
    event = ExecutionEvent.objects.filter(kind="account.trading_state", account=account).first()
    assert event.to_status == "halted" and event.message == "news"
    denied = api.post(
        "/api/decisions/",
        {"account": account.pk, "symbol": "BTCUSDT", "action": "open_long", "quantity": "0.01", "leverage": 5},
        format="json",
    )
    assert denied.status_code == 409 and denied.data["code"] == "TRADING_HALTED"
    assert api.post(f"/api/accounts/{account.pk}/reduce-only/", {}, format="json").data["trading_state"] == "reducing"
    assert api.post(f"/api/accounts/{account.pk}/resume/", {}, format="json").data["trading_state"] == "active"
    bad = api.post(f"/api/accounts/{account.pk}/halt/", {"reason": 5}, format="json")
    assert bad.status_code == 400
    account.refresh_from_db()
    assert account.trading_state == "active"
    for name in ("halt", "resume", "reduce-only"):
        assert api.post(f"/api/accounts/{world['other'].pk}/{name}/").status_code == 404
        assert APIClient().post(f"/api/accounts/{account.pk}/{name}/").status_code == 401
    world["other"].refresh_from_db()
    assert world["other"].trading_state == "active"


def test_each_control_has_its_own_throttle_scope(world, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "account-halt": "2/min"}
    api, account = world["api"], world["account"]
    assert [api.post(f"/api/accounts/{account.pk}/halt/").status_code for _ in range(3)] == [200, 200, 429]
    assert api.post(f"/api/accounts/{account.pk}/resume/").status_code == 200  # another scope
