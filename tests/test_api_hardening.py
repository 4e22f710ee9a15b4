"""Issue #10: the REST API's hardening (owner-scoped forms and filters, bounded input, strict parsing,
concurrent idempotency keys). Each test names the defect it holds down."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Decision
from execution.models import Trade
from tests.factories import PaperAccountFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = ["/api/accounts/", "/api/positions/", "/api/trades/", "/api/pending-orders/", "/api/decisions/"]
FILTERED_ENDPOINTS = [path for path in LIST_ENDPOINTS if path != "/api/accounts/"]


@pytest.fixture
def api():
    account = PaperAccountFactory(name="my-own-account")
    client = APIClient()
    token = Token.objects.create(user=account.owner)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.account = account
    return client


@pytest.fixture
def other_account():
    return PaperAccountFactory(name="someone-elses-account", owner=UserFactory())


# --- 7. The browsable API lists only the caller's accounts -----------------------------------


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_browsable_api_shows_no_other_owners_account(api, other_account, path):
    response = api.get(path, {"format": "api"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "someone-elses-account" not in html
    if path != "/api/accounts/":
        assert "my-own-account" in html  # the caller's own account is still offered


def test_browsable_decision_form_offers_only_the_callers_accounts(api, other_account):
    html = api.get("/api/decisions/", {"format": "api"}).content.decode()
    assert f'<option value="{api.account.pk}"' in html
    assert f'<option value="{other_account.pk}"' not in html


# --- 12. Account ids cannot be probed through the `account` filter ----------------------------


@pytest.mark.parametrize("path", FILTERED_ENDPOINTS)
def test_another_owners_account_id_is_refused_like_a_nonexistent_one(api, other_account, path):
    theirs = api.get(path, {"account": other_account.pk})
    missing = api.get(path, {"account": other_account.pk + 1000})
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json()["account"] == ["Select a valid choice. That choice is not one of the available choices."]
    assert theirs.json() == missing.json()  # nothing tells the two apart


@pytest.mark.parametrize("path", FILTERED_ENDPOINTS)
def test_the_callers_own_account_filters_as_before(api, other_account, path):
    response = api.get(path, {"account": api.account.pk})
    assert response.status_code == 200 and response.json()["results"] == []


# --- 9. Input that answered 500: deep JSON, out-of-range pagination; the body size cap ---------


def _post_raw(api, body: bytes | str, content_type="application/json"):
    return api.generic("POST", "/api/decisions/", body, content_type=content_type)


@pytest.mark.parametrize("depth", [1_000, 30_000])  # 30_000: 60 kB, under the size cap
def test_deeply_nested_json_is_400_with_a_clear_message(api, depth):
    body = '{"account": ' + "[" * depth + "]" * depth + "}"
    response = _post_raw(api, body)
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]
    assert not Decision.objects.exists()


def test_json_nested_beyond_the_limit_but_within_pythons_is_refused_too(api):
    depth = 100  # json.loads would take it; the parser refuses anything deeper than MAX_JSON_DEPTH
    response = _post_raw(api, '{"symbol": ' + "[" * depth + "]" * depth + "}")
    assert response.status_code == 400 and "nested" in response.json()["detail"]


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "99999999999999999999"),
        ("offset", "99999999999999999999"),
        ("limit", "9223372036854775808"),
        ("offset", "9223372036854775807"),
        ("limit", "1001"),
        ("limit", "0"),
        ("limit", "-1"),
        ("offset", "-1"),
        ("limit", "abc"),
        ("offset", "1.5"),
        ("limit", "\u0661\u0662"),
    ],
)
def test_out_of_range_or_malformed_pagination_is_400(api, path, param, value):
    response = api.get(path, {param: value})
    assert response.status_code == 400, response.content
    assert param in response.json() and "integer from" in response.json()[param][0]


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_pagination_within_bounds_still_pages(api, path):
    response = api.get(path, {"limit": "1000", "offset": "1000000000"})
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_body_over_the_limit_is_413_and_writes_nothing(api, settings, content_type):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 64 * 1024
    padding = "x" * (64 * 1024)
    if content_type == "application/json":
        body = json.dumps({"account": api.account.pk, "symbol": "BTCUSDT", "action": "hold", "pad": padding})
    else:
        body = f"account={api.account.pk}&symbol=BTCUSDT&action=hold&pad={padding}"
    response = _post_raw(api, body, content_type)
    assert response.status_code == 413
    assert response.json()["code"] == "REQUEST_TOO_LARGE" and "65536" in response.json()["detail"]
    assert not Decision.objects.exists()


def test_a_body_under_the_limit_is_read(api):
    body = json.dumps({"account": api.account.pk, "symbol": "BTCUSDT", "action": "hold", "pad": "x" * 60_000})
    assert _post_raw(api, body).status_code == 201


# --- 11. Strict parsing of a decision, and what each outcome answers --------------------------


def decide(api, **fields):
    body = {"account": api.account.pk, "symbol": "BTCUSDT", "action": "open_long", "quantity": "0.01", "leverage": 5}
    body.update(fields)
    return api.post("/api/decisions/", {k: v for k, v in body.items() if v is not OMIT}, format="json")


OMIT = object()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"quantity": "\u0661\u0662"}, "quantity"),  # Arabic-Indic digits
        ({"quantity": "0.0\u0661"}, "quantity"),
        ({"quantity": "1_000"}, "quantity"),
        ({"quantity": " 0.01"}, "quantity"),
        ({"quantity": "1e-2"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"take_profit": "\u0667\u0660\u0660\u0660\u0660"}, "take_profit"),
        ({"stop_loss": "60_000"}, "stop_loss"),
        ({"leverage": "\u0661\u0662"}, "leverage"),
        ({"leverage": "1_0"}, "leverage"),
        ({"leverage": 5.0}, "leverage"),
        ({"leverage": "5.0"}, "leverage"),
        ({"leverage": True}, "leverage"),
        ({"account": 1.5}, "account"),
        ({"account": "1.5"}, "account"),
        ({"account": True}, "account"),
        ({"account": "\u0661"}, "account"),
        ({"account": 10**30}, "account"),
        ({"symbol": 123}, "symbol"),
        ({"symbol": True}, "symbol"),
        ({"symbol": ["BTCUSDT"]}, "symbol"),
        ({"symbol": " BTCUSDT"}, "symbol"),
        ({"idempotency_key": 123}, "idempotency_key"),
        ({"idempotency_key": " k-1 "}, "idempotency_key"),
    ],
)
def test_lenient_input_is_refused_with_the_field_and_writes_nothing(api, market, fields, field):
    response = decide(api, **fields)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Decision.objects.exists() and not Trade.objects.exists()


def test_account_1_point_5_is_not_taken_as_account_1(api, market):
    assert api.account.pk == int(api.account.pk)
    response = decide(api, account=api.account.pk + 0.5)
    assert response.status_code == 400 and "account" in response.json()


@pytest.mark.parametrize(
    "fields",
    [
        {"quantity": "0.01", "leverage": 5},  # strings for decimals, a JSON integer for leverage
        {"quantity": 0.01, "leverage": "5"},  # a JSON number (read exactly, not as a float), digits for leverage
        {"quantity": 1e-2, "leverage": 5, "account": OMIT},  # filled in below
    ],
)
def test_ascii_decimal_strings_and_json_numbers_are_accepted(api, market, fields):
    if fields.get("account") is OMIT:
        fields["account"] = str(api.account.pk)  # an id as a string of digits
    response = decide(api, **fields)
    assert response.status_code == 201, response.content
    assert response.json()["quantity"] == "0.0100000000"


@pytest.mark.parametrize("action", ["close", "hold"])
@pytest.mark.parametrize("field", ["quantity", "leverage", "take_profit", "stop_loss"])
def test_close_and_hold_refuse_order_fields_instead_of_dropping_them(api, market, action, field):
    value = {"quantity": "0.01", "leverage": 5, "take_profit": "70000", "stop_loss": "60000"}[field]
    fields = {"quantity": OMIT, "leverage": OMIT, field: value}
    response = decide(api, action=action, **fields)
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not Decision.objects.exists()


@pytest.mark.parametrize("action", ["close", "hold"])
def test_close_and_hold_accept_order_fields_that_are_null(api, market, action):
    response = decide(api, action=action, quantity=None, leverage=None, take_profit=None, stop_loss=None)
    assert response.status_code in (201, 409), response.content  # close with nothing open: a denial


def test_the_service_refuses_order_fields_on_close_too(paper_account):
    from django.core.exceptions import ValidationError

    from decisions.services import submit_decision

    with pytest.raises(ValidationError) as caught:
        submit_decision(account=paper_account, symbol="BTCUSDT", action="close", quantity=Decimal("1"))
    assert "quantity" in caught.value.message_dict
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    "changed",
    [
        {"quantity": "0.02"},
        {"leverage": 6},
        {"take_profit": "70000"},
        {"stop_loss": "60000"},
        {"symbol": "ETHUSDT"},
        {"action": "open_short"},
    ],
)
def test_a_known_key_with_a_different_payload_is_409_idempotency_mismatch(api, market, changed):
    first = decide(api, idempotency_key="k-1")
    assert first.status_code == 201
    again = decide(api, idempotency_key="k-1", **changed)
    assert again.status_code == 409, again.content
    assert again.json()["code"] == "IDEMPOTENCY_MISMATCH"
    assert str(first.json()["id"]) in again.json()["detail"]
    assert Decision.objects.count() == 1 and Trade.objects.count() == 1


def test_a_known_key_with_the_same_payload_written_differently_is_the_same_decision(api, market):
    first = decide(api, idempotency_key="k-2", quantity="0.01", leverage=5)
    again = decide(api, idempotency_key="k-2", quantity="0.0100", leverage="5")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_the_service_raises_idempotency_mismatch_for_the_engine_too(paper_account):
    from decisions.services import submit_decision
    from execution.exceptions import IdempotencyMismatch

    submit_decision(account=paper_account, symbol="BTCUSDT", action="hold", idempotency_key="e-1")
    with pytest.raises(IdempotencyMismatch) as caught:
        submit_decision(account=paper_account, symbol="ETHUSDT", action="hold", idempotency_key="e-1")
    assert caught.value.code == "IDEMPOTENCY_MISMATCH"


@pytest.fixture
def exchange_down(settings):
    """Market data cannot be read: the venue answers 503 to everything."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(r"http://aster\.test/.*"), status=503, body="down")
        yield


def test_a_failed_decision_is_502_with_the_recorded_decision(api, exchange_down):
    response = decide(api, idempotency_key="f-1")
    assert response.status_code == 502, response.content
    body = response.json()
    assert body["status"] == "failed" and body["code"] == "EXECUTION_FAILED" and body["reason"]
    assert Decision.objects.get().status == "failed" and not Trade.objects.exists()
    again = decide(api, idempotency_key="f-1")  # the same key answers with the same outcome
    assert again.status_code == 502 and again.json()["id"] == body["id"]


def test_a_close_with_nothing_open_is_a_409_no_position_denial(api, market):
    response = decide(api, action="close", quantity=OMIT, leverage=OMIT)
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "NO_POSITION" and response.json()["status"] == "rejected"


def test_the_schema_documents_the_parsing_rules_and_outcomes(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    post = schema["paths"]["/api/decisions/"]["post"]
    assert {"200", "201", "400", "409", "502"} <= set(post["responses"])
    text = json.dumps(post) + json.dumps(schema["components"]["schemas"]["DecisionCreate"])
    for phrase in ("ASCII", "IDEMPOTENCY_MISMATCH", "EXECUTION_FAILED", "close", "NO_POSITION"):
        assert phrase in text, phrase


# --- The fuzz test's findings (tests/test_api_fuzz.py), held down by name -----------------------


@pytest.mark.parametrize("path", ["/api/positions/1.5/", "/api/accounts/0.5/status/", "/api/no-such-thing/"])
def test_a_url_no_route_matches_is_a_json_404_under_api(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


def test_outside_the_api_a_404_is_still_djangos_page(api):
    response = api.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_paper_accounts_empty_api_version_is_in_the_schema(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    api_version = schema["components"]["schemas"]["Account"]["properties"]["api_version"]
    assert api.get(f"/api/accounts/{api.account.pk}/").json()["api_version"] == ""
    assert {"$ref": "#/components/schemas/BlankEnum"} in api_version["oneOf"]


def test_posting_another_owners_account_reads_like_an_unknown_one(api, other_account):
    theirs = decide(api, account=other_account.pk, action="hold", quantity=OMIT, leverage=OMIT)
    missing = decide(api, account=other_account.pk + 1000, action="hold", quantity=OMIT, leverage=OMIT)
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json()["account"][0].replace(str(other_account.pk), "N") == missing.json()["account"][0].replace(
        str(other_account.pk + 1000), "N"
    )


def test_a_racing_submission_with_another_payload_is_a_mismatch_too(paper_account):
    """The key's first look-up misses, then full_clean finds the committed duplicate: the payloads
    are compared on that path as well."""
    from unittest import mock

    from decisions import services
    from execution.exceptions import IdempotencyMismatch

    services.submit_decision(account=paper_account, symbol="BTCUSDT", action="hold", idempotency_key="r-1")
    real, calls = services._earlier, []

    def miss_once(account, key):
        calls.append(key)
        return None if len(calls) == 1 else real(account, key)

    with mock.patch.object(services, "_earlier", side_effect=miss_once), pytest.raises(IdempotencyMismatch):
        services.submit_decision(account=paper_account, symbol="ETHUSDT", action="hold", idempotency_key="r-1")
    assert len(calls) == 2 and Decision.objects.count() == 1


@pytest.mark.parametrize("path", [f"{p}99999999999999999999/" for p in LIST_ENDPOINTS] + ["/api/accounts/-1/status/"])
def test_an_id_beyond_bigint_is_a_404_not_a_500(api, path):
    response = api.get(path)
    assert response.status_code == 404 and "detail" in response.json()


@pytest.mark.parametrize("path", FILTERED_ENDPOINTS)
def test_an_account_filter_beyond_bigint_is_refused_like_any_unknown_id(api, path):
    response = api.get(path, {"account": "99999999999999999999"})
    assert response.status_code == 400 and "account" in response.json()
