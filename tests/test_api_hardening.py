"""Issue #10: the REST API's hardening (owner-scoped forms and filters, bounded input, strict parsing,
concurrent idempotency keys). Each test names the defect it holds down."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Decision
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
        ("limit", "١٢"),
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
