"""Issue #10: the REST API's hardening (owner-scoped forms and filters, bounded input, strict parsing,
concurrent idempotency keys). Each test names the defect it holds down."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

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
