"""The dashboard's pages (issue 16) without a browser: the root redirect, the session login in front
of /dashboard/, the page's config, session + CSRF on the API the page calls, and the demo seed.
The page in a real browser: tests/browser/test_dashboard_browser.py."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import Account, ExecutionEvent
from execution.models import EquitySnapshot
from tests.factories import LiveV1AccountFactory, PaperAccountFactory, UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"


@pytest.fixture
def trader():
    user = UserFactory()
    user.set_password(PASSWORD)
    user.save()
    return user


def test_the_root_url_leads_to_the_dashboard_which_asks_for_a_login(client):
    root = client.get("/")
    assert root.status_code == 302 and root["Location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 302 and page["Location"] == "/dashboard/login/?next=/dashboard/"


def test_logging_in_opens_the_dashboard_with_its_config_and_a_csrf_cookie(trader):
    client = Client()
    login = client.post("/dashboard/login/", {"username": trader.username, "password": PASSWORD})
    assert login.status_code == 302 and login["Location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    html = page.content.decode()
    config = json.loads(
        re.search(r'<script id="dashboard-config" type="application/json">(.*?)</script>', html).group(1)
    )
    assert config == {"api": "/api/", "login": "/dashboard/login/", "parity_panel": True, "poll_ms": 1500}
    # Assets are served by Django (no CDN): the module, the chart library and its licence.
    assert "/static/dashboard/dashboard.js" in html
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html


def test_a_wrong_password_is_refused_with_a_message(trader):
    response = Client().post("/dashboard/login/", {"username": trader.username, "password": "wrong"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


def test_the_page_writes_through_the_api_with_its_session_and_csrf_token(trader):
    account = PaperAccountFactory(owner=trader)
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    token = client.get("/dashboard/").cookies["csrftoken"].value
    refused = client.post(f"/api/accounts/{account.pk}/halt/", {}, content_type="application/json")
    assert refused.status_code == 403  # no CSRF token: a session write is refused
    account.refresh_from_db()
    assert account.trading_state == "active"
    halted = client.post(
        f"/api/accounts/{account.pk}/halt/", {"reason": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert halted.status_code == 200 and halted.json()["trading_state"] == "halted"


def test_token_auth_still_works_beside_the_session(trader):
    from rest_framework.authtoken.models import Token

    PaperAccountFactory(owner=trader)
    token = Token.objects.create(user=trader)
    response = Client().get("/api/accounts/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200 and response.json()["count"] == 1


def test_the_dashboard_imports_none_of_the_apps_it_shows():
    """It has no data path of its own (import-linter enforces the same in CI)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = "\n".join(p.read_text() for p in (root / "dashboard").rglob("*.py"))
    assert not re.search(r"^\s*(from|import) (accounts|execution|decisions)\b", sources, re.M)
    assert (root / "dashboard/static/dashboard/vendor/lightweight-charts/LICENSE").exists()
    out = subprocess.run(["git", "check-ignore", "-q", "var/test-artifacts/x.png"], cwd=root)
    assert out.returncode == 0, "browser test artefacts must not be committed"


# ------------------------------------------------------------------ seed_demo_equity


def test_seed_demo_equity_writes_a_day_ending_at_the_wallet_and_marks_it_as_demo():
    account = PaperAccountFactory(paper_balance=Decimal("10000"))
    call_command("seed_demo_equity", account=account.pk)
    rows = list(EquitySnapshot.objects.filter(account=account).order_by("taken_at"))
    assert len(rows) == 24 * 60
    assert rows[-1].wallet == account.paper_wallet and rows[-1].unrealized_pnl == 0
    assert len({r.equity for r in rows}) > 100  # a curve, not a flat line
    assert all(r.equity == r.wallet + r.unrealized_pnl for r in rows)
    (event,) = ExecutionEvent.objects.filter(account=account, kind="demo.equity_seeded")
    assert event.data["snapshots"] == 24 * 60 and "simulated" in event.message
    # Once per account: a second run writes nothing.
    call_command("seed_demo_equity", account=account.pk)
    assert EquitySnapshot.objects.filter(account=account).count() == 24 * 60
    assert ExecutionEvent.objects.filter(kind="demo.equity_seeded").count() == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"account": 999_999}, "No account 999999"),
        ({"account": None, "hours": 0}, "--hours must be from 1 to 168"),
        ({"account": None, "hours": 169}, "--hours must be from 1 to 168"),
    ],
)
def test_seed_demo_equity_refuses_bad_input_and_writes_nothing(options, message):
    account = PaperAccountFactory()
    options = {**options, "account": options["account"] or account.pk}
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo_equity", **options)
    assert not EquitySnapshot.objects.exists() and not ExecutionEvent.objects.filter(kind="demo.equity_seeded").exists()


def test_seed_demo_equity_refuses_a_live_account():
    account = LiveV1AccountFactory()
    with pytest.raises(CommandError, match="live"):
        call_command("seed_demo_equity", account=account.pk)
    assert not EquitySnapshot.objects.exists()
    assert Account.objects.get(pk=account.pk).trading_state == "active"


def test_favicon_is_served_not_a_404(client):
    """Browsers ask for /favicon.ico on every page (the admin names none): a console error otherwise."""
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"].endswith("/dashboard/favicon.svg")
    from django.contrib.staticfiles import finders

    found = finders.find("dashboard/favicon.svg")
    assert found and "<svg" in Path(found).read_text()
