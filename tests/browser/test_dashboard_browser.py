"""The dashboard in a real browser (issue 16 item 4): the system's Chromium driven by Playwright,
against Django's live server and the local AsterDEX simulator.

A paper position is placed by the test through the execution service, priced by the simulator;
its mark moves when the simulator's price moves and the paper sweep (what beat runs every few
seconds) marks it; the page, polling the API, shows the new mark. Everything the page does is a
call to the REST API; every test asserts that the page logged no console error and that no request
failed (status >= 400) except the one refusal a test provokes on purpose.

Screenshots of the main states go to var/test-artifacts/ (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from tests.factories import PaperAccountFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
PASSWORD = "a-long-browser-password"
TIMEOUT_MS = 10_000


class PageProblems:
    """Console errors, uncaught exceptions and failed requests seen by one page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        self.allowed: list[tuple[str, int]] = []  # (URL part, status) a test provokes on purpose
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: self.problems.append(f"request failed: {request.url}"))
        page.on("response", self.on_response)

    def allow(self, url_part: str, status: int) -> None:
        self.allowed.append((url_part, status))

    def on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        # Chromium logs every 4xx answer as a console error; an allowed refusal is expected.
        if "Failed to load resource" in message.text and any(str(status) in message.text for _, status in self.allowed):
            return
        self.problems.append(f"console error: {message.text}")

    def on_response(self, response: Any) -> None:
        if response.status < 400:
            return
        if any(part in response.url and response.status == status for part, status in self.allowed):
            return
        self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")


@pytest.fixture
def trader(db: Any) -> Any:
    user = UserFactory()
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def page(browser: Any, live_server: Any, trader: Any) -> Iterator[tuple[Any, PageProblems]]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = PageProblems(page)
    yield page, problems
    # Read before closing: closing aborts the poll in flight, which is no fault of the page.
    seen = list(problems.problems)
    context.close()
    assert seen == []


def log_in(page: Any, user: Any) -> None:
    page.goto("/")
    page.wait_for_url(re.compile(r"/dashboard/login/"))
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/(\?.*)?$"))
    page.locator("body[data-loaded]").wait_for(state="attached")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"))


def cell(page: Any, position_id: int, field: str) -> Any:
    return page.locator(f'tr[data-position-id="{position_id}"] [data-field="{field}"]')


def test_log_in_see_the_placed_position_watch_its_mark_amend_its_stop_and_close_it(page, trader, sim, settings):
    from execution.models import Position
    from execution.services import ExecutionService
    from execution.services.paper.sweep import sweep_paper_triggers

    settings.PAPER_MARK_SECONDS = 0  # mark at every sweep, not every 15 s
    page, problems = page
    account = PaperAccountFactory(owner=trader, name="browser-paper")
    mark = sim.exchange.symbols["BTCUSDT"].price
    take_profit = (mark * Decimal("1.02")).quantize(Decimal("0.1"))
    result = ExecutionService(account).execute_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        leverage=5,
        take_profit=str(take_profit),
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
    )
    position = result.position
    sweep_paper_triggers()  # the first mark
    call_command("seed_demo_equity", account=account.pk)  # a curve for the screenshot

    log_in(page, trader)
    assert page.locator("#mode-badge").inner_text() == "PAPER"
    assert "mode-paper" in page.locator("body").get_attribute("class")
    row = page.locator(f'tr[data-position-id="{position.pk}"]')
    row.wait_for()
    assert cell(page, position.pk, "symbol").inner_text() == "BTCUSDT"
    assert cell(page, position.pk, "side").inner_text() == "LONG"
    assert cell(page, position.pk, "quantity").inner_text() == "0.01"
    page.locator("#trades tbody tr").first.wait_for()
    page.locator("#pending-orders tbody tr").nth(1).wait_for()  # the TP and SL legs
    shot(page, "position")

    # The simulator's price moves; the sweep marks the position; the page's poll shows it.
    before = cell(page, position.pk, "mark_price").inner_text()
    sim.exchange.set_price("BTCUSDT", mark * Decimal("1.005"))
    sweep_paper_triggers()
    position.refresh_from_db()
    new_mark = format(position.mark_price.quantize(Decimal("0.01")).normalize(), "f")  # as the page shows it
    assert new_mark != before
    page.wait_for_function(
        "([id, mark]) => document.querySelector(`tr[data-position-id='${id}'] [data-field='mark_price']`)"
        ".textContent === mark",
        arg=[position.pk, new_mark],
    )
    assert cell(page, position.pk, "unrealized_pnl").inner_text().startswith("+")

    # Amend the stop in place: first one the API refuses (above the mark), with its message shown.
    problems.allow("/protection/", 409)
    row.locator('[data-action="edit-protection"]').click()
    stop_input = row.locator('input[name="stop_loss"]')
    stop_input.fill(str((mark * Decimal("1.2")).quantize(Decimal("0.1"))))
    row.locator("button[type=submit]").click()
    error = row.locator(".row-error")
    error.wait_for()
    assert "INVALID_PROTECTION" in error.inner_text()
    shot(page, "stop-refused")
    new_stop = (mark * Decimal("0.99")).quantize(Decimal("0.1"))
    stop_input.fill(str(new_stop))
    row.locator("button[type=submit]").click()
    page.wait_for_function(
        "([id, text]) => document.querySelector(`tr[data-position-id='${id}'] [data-field='stop_loss']`)"
        "?.textContent === text",
        arg=[position.pk, f"SL {format(new_stop.normalize(), 'f')}"],
    )
    position.refresh_from_db()
    assert position.stop_loss == new_stop
    assert position.take_profit == take_profit  # not sent, so kept (and not replaced)

    # Close it: the dialog first (keeping it changes nothing), then confirmed.
    row.locator('[data-action="close"]').click()
    page.locator("#close-dialog").wait_for(state="visible")
    assert "BTCUSDT" in page.locator("#close-dialog-text").inner_text()
    shot(page, "close-dialog")
    page.locator('#close-dialog button[value="cancel"]').click()
    position.refresh_from_db()
    assert position.status == "open"
    row.locator('[data-action="close"]').click()
    page.locator("#close-confirm").click()
    row.wait_for(state="detached")
    page.locator("#positions-empty").wait_for(state="visible")
    assert Position.objects.get(pk=position.pk).status == "closed"
    assert "Closed BTCUSDT" in page.locator("#flash").inner_text()
    shot(page, "closed")


def test_halt_and_resume_the_account(page, trader):
    from accounts.models import Account

    page, _ = page
    account = PaperAccountFactory(owner=trader)
    log_in(page, trader)
    badge = page.locator("#state-badge")
    assert badge.inner_text() == "active"
    assert page.locator("#resume-button").is_disabled()
    page.locator("#halt-button").click()
    page.wait_for_function("document.querySelector('#state-badge').textContent === 'halted'")
    assert Account.objects.get(pk=account.pk).trading_state == "halted"
    assert page.locator("#halt-button").is_disabled()
    page.locator("#events li strong", has_text="account.trading_state").first.wait_for()
    shot(page, "halted")
    page.locator("#resume-button").click()
    page.wait_for_function("document.querySelector('#state-badge').textContent === 'active'")
    assert Account.objects.get(pk=account.pk).trading_state == "active"


def test_the_equity_chart_loads_with_data_and_says_it_is_demo_data(page, trader):
    page, _ = page
    account = PaperAccountFactory(owner=trader, name="demo-paper")
    PaperAccountFactory(owner=trader, name="second")  # the switcher offers both
    call_command("seed_demo_equity", account=account.pk)
    log_in(page, trader)
    page.wait_for_function("document.querySelectorAll('#account-select option').length === 2")
    page.locator("#account-select").select_option(str(account.pk))
    page.locator(f'body[data-loaded="{account.pk}"]').wait_for(state="attached")
    page.wait_for_function("Number(document.querySelector('#equity-chart').dataset.points) > 1000")
    assert page.locator("#equity-chart canvas").count() > 0
    assert page.locator("#demo-note").is_visible()
    assert "simulated run" in page.locator("#demo-note").inner_text()
    shot(page, "equity")
    page.locator('.range button[data-range="week"]').click()
    page.wait_for_function("Number(document.querySelector('#equity-chart').dataset.points) < 100")
    # Readable on a phone: nothing wider than the screen but the tables' own scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "phone")


def test_a_live_account_is_unmistakable_and_its_parity_panel_shows_only_when_the_api_answers(page, trader, settings):
    """The panel's two answers, arranged with Playwright's routing: first 404 (an account the
    endpoint does not know: the panel stays hidden, quietly), then 200."""
    from tests.factories import LiveV1AccountFactory

    settings.DASHBOARD_PARITY_PANEL = True
    page, problems = page
    paper = PaperAccountFactory(owner=trader, name="paper-one")
    live = LiveV1AccountFactory(owner=trader, name="live-one")
    parity = {
        "account": live.pk,
        "since": None,
        "groups": [
            {
                "symbol": "BTCUSDT",
                "kind": "entry",
                "count": 12,
                "mean_bps": "1.5",
                "median_bps": "1.2",
                "p95_bps": "4.0",
                "fee_diff": "0.01",
                "mean_trigger_delay_ms": "850",
            }
        ],
        "histogram": [
            {"low_bps": str(low), "high_bps": str(low + 1), "count": count} for low, count in enumerate([1, 4, 6, 1])
        ],
        "calibration": {},
    }
    answers = {"status": 404}
    problems.allow("/parity/", 404)

    def parity_route(route: Any) -> None:
        if answers["status"] == 200:
            route.fulfill(status=200, json=parity)
        else:
            route.fulfill(status=404, json={"detail": "Not found."})

    page.route("**/api/accounts/*/parity/", parity_route)
    log_in(page, trader)
    assert page.locator("#mode-badge").inner_text() == "PAPER"
    assert page.locator("#parity-panel").is_hidden()  # paper: not even asked for

    page.locator("#account-select").select_option(str(live.pk))
    page.locator(f'body[data-loaded="{live.pk}"]').wait_for(state="attached")
    assert page.locator("#mode-badge").inner_text() == "LIVE"
    assert "mode-live" in page.locator("body").get_attribute("class")
    assert "LIVE" in page.locator("#account-select option:checked").inner_text()
    assert page.locator("#parity-panel").is_hidden()  # 404: hidden, nothing else happens

    answers["status"] = 200
    page.locator("#account-select").select_option(str(paper.pk))
    page.locator("#account-select").select_option(str(live.pk))
    page.locator("#parity-panel").wait_for(state="visible")
    assert page.locator("#parity-histogram .bar").count() == 4
    assert page.locator("#parity-groups tbody tr").count() == 1
    shot(page, "live-parity")


def test_a_live_accounts_parity_panel_shows_its_records_from_the_real_endpoint(page, trader):
    """The parity panel against issue 18's own endpoint (no routing): slippage per record, in bps."""
    from execution.models import ParityRecord
    from tests.factories import LiveV1AccountFactory

    page, _ = page
    live = LiveV1AccountFactory(owner=trader, name="live-parity")
    for n, slippage in enumerate(["0.5", "1.5", "1.7", "-0.4", "3.2"]):
        ParityRecord.objects.create(
            account=live,
            source_key=f"x{live.pk}-entry-{n}",
            symbol="BTCUSDT",
            kind="entry",
            side="BUY",
            quantity=Decimal("0.01"),
            live_price=Decimal("65000"),
            shadow_price=Decimal("65000"),
            slippage_bps=Decimal(slippage),
            live_fee=Decimal("0.2275"),
            shadow_fee=Decimal("0.2275"),
            book_age_ms=20,
        )
    log_in(page, trader)
    page.locator("#account-select").select_option(str(live.pk))
    page.locator(f'body[data-loaded="{live.pk}"]').wait_for(state="attached")
    page.locator("#parity-panel").wait_for(state="visible")
    assert page.locator("#parity-histogram .bar").count() >= 2
    groups = page.locator("#parity-groups tbody tr")
    assert groups.count() == 1
    assert "BTCUSDT" in groups.first.inner_text()
    shot(page, "live-parity-real")
