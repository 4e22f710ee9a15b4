"""The REST API's faces: 201/200 from the service's `created`, the denial code field."""

from unittest import mock

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Decision, DecisionStatus
from decisions.services import Submission

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


def test_status_201_or_200_follows_the_service_not_a_second_look_up(api):
    decision = Decision.objects.create(
        account=api.account, symbol="BTCUSDT", action="hold", status=DecisionStatus.SKIPPED, idempotency_key="x-1"
    )
    for created, expected in ((True, 201), (False, 200)):
        with mock.patch("execution.api.views.submit_decision", return_value=Submission(decision, created)) as submit:
            response = decide(api, action="hold", idempotency_key="x-1")
        assert response.status_code == expected and response.data["id"] == decision.pk
        submit.assert_called_once()


def test_a_repeated_key_is_200_with_the_first_decision(api):
    first = decide(api, action="hold", idempotency_key="h-1")
    again = decide(api, action="hold", idempotency_key="h-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"] and Decision.objects.count() == 1


def test_the_409_code_comes_from_the_denial_code_field(api, market):
    response = decide(api, stop_loss="90000")
    assert response.status_code == 409
    assert response.data["code"] == response.data["denial_code"] == "INVALID_PROTECTION"
    decision = Decision.objects.get(pk=response.data["id"])
    decision.reason = "free text without a code"  # the code no longer depends on the reason's wording
    with mock.patch("execution.api.views.submit_decision", return_value=Submission(decision, False)):
        again = decide(api, stop_loss="90000")
    assert again.status_code == 409 and again.data["code"] == "INVALID_PROTECTION"


def test_denial_code_is_read_only_in_the_decision_listing(api, market):
    decide(api, stop_loss="90000")
    listed = api.get("/api/decisions/").data["results"][0]
    assert listed["denial_code"] == "INVALID_PROTECTION"
