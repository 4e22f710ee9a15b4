"""The REST API: owner scoping, decisions in, positions and trades out, errors by status code."""

from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.engine import DecisionEngine
from decisions.models import Decision
from execution.models import Trade
from tests.factories import DEMO_V1_API_SECRET, LiveV1AccountFactory, PaperAccountFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(paper_account):
    client = APIClient()
    token = Token.objects.create(user=paper_account.owner)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.account = paper_account
    return client


def decide(api, **fields):
    body = {"account": api.account.pk, "symbol": "BTCUSDT", "action": "open_long", "quantity": "0.01", "leverage": 5}
    body.update(fields)
    return api.post("/api/decisions/", body, format="json")


def test_unauthenticated_requests_are_refused():
    assert APIClient().get("/api/positions/").status_code in (401, 403)


def test_a_decision_opens_a_paper_position_and_the_api_shows_it(api, market):
    response = decide(api, take_profit="70000", stop_loss="60000", idempotency_key="d-1")
    assert response.status_code == 201, response.content
    assert response.data["status"] == "executed" and response.data["trade"]
    positions = api.get("/api/positions/?status=open&mode=paper").data["results"]
    assert len(positions) == 1 and positions[0]["side"] == "LONG"
    assert positions[0]["quantity"] == "0.0100000000"  # decimals travel as strings
    trades = api.get("/api/trades/").data["results"]
    assert trades[0]["reason"] == "entry" and isinstance(trades[0]["price"], str)
    legs = api.get("/api/pending-orders/?status=pending").data["results"]
    assert sorted(leg["kind"] for leg in legs) == ["stop_loss", "take_profit"]
    status = api.get(f"/api/accounts/{api.account.pk}/status/").data
    assert len(status["open_positions"]) == 1 and status["pending_orders"] == 2
    again = decide(api, take_profit="70000", stop_loss="60000", idempotency_key="d-1")
    assert again.status_code == 200 and again.data["id"] == response.data["id"]
    assert Trade.objects.count() == 1


def test_a_risk_denial_is_409_with_its_code(api, market):
    response = decide(api, stop_loss="90000")
    assert response.status_code == 409
    assert response.data["code"] == "INVALID_PROTECTION" and response.data["status"] == "rejected"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "buy"}, "action"),
        ({"quantity": "-1"}, "quantity"),
        ({"leverage": 26}, "leverage"),
        ({"symbol": "btc"}, "symbol"),
        ({"quantity": None}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
    ],
)
def test_bad_decisions_are_400_with_the_field_and_write_nothing(api, market, fields, field):
    response = decide(api, **fields)
    assert response.status_code == 400 and field in response.data
    assert not Decision.objects.exists() and not Trade.objects.exists()


def test_another_owners_objects_are_404_and_unlisted(api, market):
    other = PaperAccountFactory(owner=UserFactory())
    DecisionEngine().submit(other, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5)
    assert api.get(f"/api/accounts/{other.pk}/").status_code == 404
    assert api.get(f"/api/accounts/{other.pk}/status/").status_code == 404
    assert api.get("/api/positions/").data["count"] == 0
    assert api.get("/api/decisions/").data["count"] == 0
    response = decide(api, account=other.pk)
    assert response.status_code == 400 and "account" in response.data


def test_hold_and_close_decisions(api, market):
    assert decide(api, action="hold", quantity=None, leverage=None).data["status"] == "skipped"
    decide(api)
    closed = decide(api, action="close", quantity=None, leverage=None)
    assert closed.status_code == 201 and closed.data["status"] == "executed"
    assert api.get("/api/positions/?status=closed").data["count"] == 1


def test_account_credentials_show_only_whether_they_are_set(paper_account):
    live = LiveV1AccountFactory(owner=paper_account.owner)
    client = APIClient()
    client.force_authenticate(paper_account.owner)
    response = client.get(f"/api/accounts/{live.pk}/")
    assert response.data["credentials"]["api_secret"] == "set"
    assert DEMO_V1_API_SECRET not in response.content.decode()


def test_schema_and_swagger_ui_are_served_without_a_cdn(api):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/decisions/" in schema.content
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()
