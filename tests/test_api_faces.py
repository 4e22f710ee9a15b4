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
        with mock.patch("decisions.api.views.submit_decision", return_value=Submission(decision, created)) as submit:
            response = decide(api, action="hold", quantity=None, leverage=None, idempotency_key="x-1")
        assert response.status_code == expected and response.data["id"] == decision.pk
        submit.assert_called_once()


def test_a_repeated_key_is_200_with_the_first_decision(api):
    first = decide(api, action="hold", quantity=None, leverage=None, idempotency_key="h-1")
    again = decide(api, action="hold", quantity=None, leverage=None, idempotency_key="h-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"] and Decision.objects.count() == 1


def test_the_409_code_comes_from_the_denial_code_field(api, market):
    response = decide(api, stop_loss="90000")
    assert response.status_code == 409
    assert response.data["code"] == response.data["denial_code"] == "INVALID_PROTECTION"
    decision = Decision.objects.get(pk=response.data["id"])
    decision.reason = "free text without a code"  # the code no longer depends on the reason's wording
    with mock.patch("decisions.api.views.submit_decision", return_value=Submission(decision, False)):
        again = decide(api, stop_loss="90000")
    assert again.status_code == 409 and again.data["code"] == "INVALID_PROTECTION"


def test_denial_code_is_read_only_in_the_decision_listing(api, market):
    decide(api, stop_loss="90000")
    listed = api.get("/api/decisions/").data["results"][0]
    assert listed["denial_code"] == "INVALID_PROTECTION"


# --- the one exception handler -----------------------------------------------------------

SECRET_IN_CAUSE = "0xdeadbeef-private-key-material"


def raising(exc):
    """A tiny API view that raises `exc`, run through the configured exception handler."""
    from rest_framework.permissions import AllowAny
    from rest_framework.views import APIView

    class Raises(APIView):
        authentication_classes = []
        permission_classes = [AllowAny]

        def get(self, request):
            raise exc

    from rest_framework.test import APIRequestFactory

    return Raises.as_view()(APIRequestFactory().get("/x/"))


def test_the_handler_is_the_configured_one():
    from rest_framework.settings import api_settings

    from execution.api.errors import exception_handler

    assert api_settings.EXCEPTION_HANDLER is exception_handler


@pytest.mark.parametrize(
    ("exc", "body"),
    [
        (
            lambda e: e({"quantity": "Must be positive.", "leverage": ["Too high.", "Not an integer."]}),
            {"quantity": ["Must be positive."], "leverage": ["Too high.", "Not an integer."]},
        ),
        (lambda e: e("Just wrong."), {"non_field_errors": ["Just wrong."]}),
        (lambda e: e({"__all__": ["Pair incomplete."]}), {"non_field_errors": ["Pair incomplete."]}),
        (lambda e: e("Value %(v)s.", params={"v": 3}), {"non_field_errors": ["Value 3."]}),
    ],
)
def test_django_validation_errors_are_400_with_field_messages(exc, body):
    from django.core.exceptions import ValidationError

    response = raising(exc(ValidationError))
    assert response.status_code == 400
    assert response.data == body


def test_a_risk_denial_is_409_with_detail_and_code():
    from execution.exceptions import RiskCheckFailed

    response = raising(RiskCheckFailed("STALE_PRICE", "the mark price is 45 s old"))
    assert response.status_code == 409
    assert response.data == {"detail": "the mark price is 45 s old", "code": "STALE_PRICE"}


@pytest.mark.parametrize("code", [None, "EXCHANGE_REJECTED", "OUTCOME_UNKNOWN"])
def test_other_execution_errors_are_502_with_detail_and_code_and_nothing_else(code):
    from execution.exceptions import ExchangeRejected, ExecutionError, OrderOutcomeUnknown

    cls = {None: ExecutionError, "EXCHANGE_REJECTED": ExchangeRejected, "OUTCOME_UNKNOWN": OrderOutcomeUnknown}[code]
    try:
        try:
            raise RuntimeError(f"signing failed with {SECRET_IN_CAUSE}")
        except RuntimeError as cause:
            raise cls("the exchange refused the order", details={"key": SECRET_IN_CAUSE}) from cause
    except ExecutionError as exc:
        response = raising(exc)
    assert response.status_code == 502
    assert response.data == {"detail": "the exchange refused the order", "code": cls.code}
    response.render()
    assert SECRET_IN_CAUSE.encode() not in response.content and b"Traceback" not in response.content


def test_drf_errors_keep_their_bodies():
    from rest_framework import exceptions

    response = raising(exceptions.ValidationError({"symbol": ["A symbol like BTCUSDT."]}))
    assert response.status_code == 400 and response.data == {"symbol": ["A symbol like BTCUSDT."]}
    assert raising(exceptions.NotFound()).status_code == 404


def test_a_validation_error_from_the_decision_service_is_400_with_the_field(api):
    from django.core.exceptions import ValidationError

    with mock.patch(
        "decisions.api.views.submit_decision", side_effect=ValidationError({"symbol": "Not on this exchange."})
    ):
        response = decide(api)
    assert response.status_code == 400 and response.data == {"symbol": ["Not on this exchange."]}


def test_a_serializer_error_keeps_drfs_400_body(api):
    response = decide(api, quantity=None)
    assert response.status_code == 400 and response.data == {"quantity": ["Required to open a position."]}


# --- the symbol pattern is the exchange rules' --------------------------------------------


@pytest.mark.parametrize("symbol", ["BTCUSDT", "1000PEPEUSDT", "B", "btcusdt", "BTC-USDT", "X" * 33])
def test_api_risk_checks_and_client_accept_the_same_symbols(symbol):
    from rest_framework.exceptions import ValidationError

    from decisions.api.serializers import DecisionCreateSerializer
    from execution.aster import client, rules
    from execution.services import risk

    assert risk.SYMBOL_RE is rules.SYMBOL_RE and client.SYMBOL_RE is rules.SYMBOL_RE
    field = DecisionCreateSerializer().fields["symbol"]
    accepted_by_api = True
    try:
        field.run_validation(symbol)
    except ValidationError:
        accepted_by_api = False
    assert accepted_by_api == bool(rules.SYMBOL_RE.match(symbol)) == (symbol in ("BTCUSDT", "1000PEPEUSDT"))
