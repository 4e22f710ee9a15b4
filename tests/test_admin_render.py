"""The admin as people read it (issue 16, item 3): every list and detail page of the accounts,
execution and decisions admin is rendered with rows, and its visible text checked for storage
zeros (`65095.6000000000`, `0E-10`) and for timestamps without seconds. The expected plain
figures are asserted too, so that a page that shows nothing cannot pass."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.display import plain_decimal, plain_json, plain_time
from accounts.models import Account, ExecutionEvent
from decisions.models import Decision
from execution.models import (
    Alert,
    EquitySnapshot,
    ExchangeFill,
    FundingPayment,
    Heartbeat,
    ParityRecord,
    PendingOrder,
    Position,
    PriceCacheEntry,
    ReconciliationItem,
    ReconciliationRun,
    StreamLease,
    StreamStatus,
    Trade,
)
from tests.factories import LiveV1AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db

APPS = ("accounts", "execution", "decisions")
# A fixed-point number with a zero it does not need at the end: "65095.6000000000", "1.50", "0.0".
STORAGE_ZEROS = re.compile(r"\d\.\d*0(?!\d)")
EXPONENT = re.compile(r"\d[eE][-+]?\d")
WITH_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
# Django's default DATETIME_FORMAT ("Nov. 27, 2026, 6:49 p.m.", "midnight", "noon"): minutes only.
WITHOUT_SECONDS = re.compile(r"\b\d{1,2}(:\d{2})? [ap]\.m\.|\bmidnight\b|\bnoon\b")
# Made to read back with storage zeros: 10 decimal places in the database.
OPENED = timezone.now().replace(microsecond=0) - timedelta(hours=2, seconds=7)


class VisibleText(HTMLParser):
    """What a person sees on a page: the text outside <script>/<style>, plus the values of the
    text and number inputs (a change form's figures)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "input":
            attributes = dict(attrs)
            if attributes.get("type", "text") in ("text", "number") and attributes.get("value"):
                self.parts.append(attributes["value"] or "")
        if tag == "textarea":
            self.parts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return "\n".join(parser.parts)


def assert_reads_plainly(text: str, where: str) -> None:
    zeros = sorted(set(STORAGE_ZEROS.findall(text)))
    # Show the lines, not only the match: "0.0" alone does not say where it came from.
    offending = [line for line in text.splitlines() if STORAGE_ZEROS.search(line) or EXPONENT.search(line)]
    assert not offending, f"{where}: storage zeros or exponents {zeros}: {offending[:10]}"
    assert not WITHOUT_SECONDS.search(text), f"{where}: a timestamp without seconds: {WITHOUT_SECONDS.search(text)}"


# --------------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    "text",
    [
        "65095.6000000000",
        "LONG 0E-10 BTCUSDT @ 65095.6000000000 [closed]",
        "fee 1.50",
        "0.0",
        "Nov. 27, 2026, 6:49 p.m.",
        "Nov. 27, 2026, midnight",
        "2E+2",
    ],
)
def test_the_checker_catches_storage_zeros_exponents_and_minutes(text):
    with pytest.raises(AssertionError):
        assert_reads_plainly(text, "sample")


@pytest.mark.parametrize("text", ["65095.6", "0", "0.01", "100", "2026-11-27 18:49:18", "10x", "paper-1 (paper)"])
def test_the_checker_lets_plain_figures_through(text):
    assert_reads_plainly(text, "sample")


def test_visible_text_reads_cells_and_inputs_not_scripts():
    html = '<td>1.50</td><script>var x = "2.50";</script><input type="number" value="3.50"><input type="hidden" value="4.50">'
    assert visible_text(html).split("\n") == ["1.50", "3.50"]


# --------------------------------------------------------------------------- the formatting function


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("0E-10"), "0"),
        (Decimal("-0E-10"), "0"),
        (Decimal("65095.6000000000"), "65095.6"),
        (Decimal("-12.5000000000"), "-12.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.0000000100"), "0.00000001"),
        (Decimal("123456789012345678.0000000001"), "123456789012345678.0000000001"),
        (0.0, "0"),
        (1.25, "1.25"),
        (None, "-"),
    ],
)
def test_plain_decimal(value, shown):
    assert plain_decimal(value) == shown


def test_plain_time_has_seconds_and_plain_json_has_plain_numbers():
    at = timezone.now().replace(year=2026, month=11, day=27, hour=18, minute=49, second=18, microsecond=500)
    assert plain_time(at) == "2026-11-27 18:49:18"
    assert plain_time(None) == "-"
    assert (
        plain_json(
            {
                "qty": Decimal("0.0100000000"),
                "rows": [{"p": "65000.5000000000"}],
                "id": "x1-0.50a",
                "n": 3,
                "z": "0E-10",
                "o": "0070",
            }
        )
        == '{"qty": "0.01", "rows": [{"p": "65000.5"}], "id": "x1-0.50a", "n": 3, "z": "0", "o": "0070"}'
    )


def test_object_titles_read_plainly():
    account = PaperAccountFactory()
    closed = Position.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="LONG",
        quantity=Decimal("0"),
        entry_price=Decimal("65095.6"),
        leverage=10,
        status="closed",
        closed_at=timezone.now() + timedelta(minutes=1),
    )
    closed.refresh_from_db()
    assert closed.quantity.as_tuple().exponent == -10  # read back as stored: Decimal('0E-10')
    assert str(closed) == "LONG 0 BTCUSDT @ 65095.6 [closed]"


# --------------------------------------------------------------------------- every page, with rows


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("admin", "admin@example.test", "pw-admin-123")
    client.force_login(user)
    return client


def at(minutes: int) -> timezone.datetime:
    return OPENED + timedelta(minutes=minutes, seconds=13)


@pytest.fixture
def rows():
    return make_rows()


def make_rows() -> dict[str, object]:
    """One or more rows of every model the admin shows, holding figures with storage zeros."""
    paper = PaperAccountFactory(name="paper-main", paper_realized_pnl=Decimal("12.5"))
    live = LiveV1AccountFactory(name="live-main", live_wallet_balance=Decimal("5000.75"), live_balance_at=at(1))
    position = Position.objects.create(
        account=paper,
        symbol="BTCUSDT",
        side="LONG",
        quantity=Decimal("0.01"),
        entry_price=Decimal("65000.5"),
        leverage=10,
        margin=Decimal("65.0005"),
        mark_price=Decimal("65100.25"),
        unrealized_pnl=Decimal("0.9975"),
        realized_pnl=Decimal("-0.26"),
        liquidation_price=Decimal("58800.45"),
        take_profit=Decimal("70000"),
        stop_loss=Decimal("60000.5"),
        marked_at=at(3),
    )
    closed = Position.objects.create(
        account=paper,
        symbol="ETHUSDT",
        side="LONG",
        quantity=Decimal("0"),
        entry_price=Decimal("65095.6"),
        leverage=5,
        status="closed",
        closed_at=timezone.now() + timedelta(minutes=1),
    )
    Position.objects.create(
        account=live,
        symbol="BTCUSDT",
        side="SHORT",
        quantity=Decimal("0.02"),
        entry_price=Decimal("64000.5"),
        leverage=20,
        margin=Decimal("64.0005"),
        unrealized_pnl=Decimal("-1.5"),
        realized_pnl=Decimal("3.25"),
    )
    Position.objects.filter(pk__in=[position.pk, closed.pk]).update(opened_at=OPENED)
    trade = Trade.objects.create(
        account=paper,
        position=position,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.01"),
        quantity=Decimal("0.01"),
        price=Decimal("65000.5"),
        fee=Decimal("0.26"),
        realized_pnl=Decimal("-0.26"),
        leverage=10,
        take_profit=Decimal("70000"),
        stop_loss=Decimal("60000.5"),
        client_order_id="x1-abcdefghijklmnopqrst",
        status="filled",
        filled_at=at(2),
    )
    stop = PendingOrder.objects.create(
        account=paper,
        position=position,
        symbol="BTCUSDT",
        kind="stop_loss",
        side="SELL",
        trigger_price=Decimal("60000.5"),
        client_order_id="x1-abcdefghijklmnopqrst-sl",
    )
    PendingOrder.objects.create(
        account=paper,
        position=position,
        symbol="BTCUSDT",
        kind="take_profit",
        side="SELL",
        trigger_price=Decimal("70000"),
        quantity=Decimal("0.005"),
        client_order_id="x1-abcdefghijklmnopqrst-tp",
        sibling=stop,
        trade=trade,
    )
    ExecutionEvent.objects.create(
        account=paper,
        kind="trade.filled",
        subject_type="trade",
        subject_id=trade.pk,
        from_status="submitting",
        to_status="filled",
        message="filled 0.01 BTCUSDT at 65000.5",
        data={"price": "65000.5000000000", "quantity": Decimal("0.0100000000"), "fee": Decimal("0E-10")},
    )
    FundingPayment.objects.create(
        account=paper,
        position=position,
        symbol="BTCUSDT",
        funding_time=at(4),
        rate=Decimal("0.0001"),
        mark_price=Decimal("65000.5"),
        quantity=Decimal("0.01"),
        amount=Decimal("0.065"),
    )
    Alert.objects.create(account=paper, kind="liquidation", message="liquidated at 58800.45", cause="liq-1")
    EquitySnapshot.objects.create(
        account=paper,
        taken_at=at(5),
        wallet=Decimal("10012.5"),
        unrealized_pnl=Decimal("0.9975"),
        equity=Decimal("10013.4975"),
        margin_in_use=Decimal("65.0005"),
    )
    run = ReconciliationRun.objects.create(account=live, status="repaired", differences=1, finished_at=at(6))
    ReconciliationItem.objects.create(
        run=run,
        kind="position_quantity",
        symbol="BTCUSDT",
        local={"quantity": "0.0200000000"},
        remote={"positionAmt": "-0.020", "entryPrice": "64000.50"},
        action="adjusted",
        outcome="done",
    )
    PriceCacheEntry.objects.create(
        symbol="BTCUSDT",
        mark_price=Decimal("65100.25"),
        index_price=Decimal("65099.1"),
        last_price=Decimal("65100.3"),
        funding_rate=Decimal("0.0001"),
        event_time_ms=int(timezone.now().timestamp() * 1000),
        received_at=at(7),
    )
    StreamStatus.objects.create(
        name=f"user:{live.pk}", kind="user", account=live, connected=True, last_frame_at=at(8), updated_at=at(8)
    )
    StreamLease.objects.create(account=live, holder="host:1", acquired_at=at(9), expires_at=at(10))
    ExchangeFill.objects.create(
        account=live,
        symbol="BTCUSDT",
        exchange_order_id="7",
        exchange_trade_id="9",
        side="SELL",
        quantity=Decimal("0.02"),
        price=Decimal("64000.5"),
        commission=Decimal("0.5"),
        realized_pnl=Decimal("0"),
    )
    Heartbeat.objects.create(name="paper_sweep", beat_at=at(11), seconds=0.0)
    ParityRecord.objects.create(
        account=live,
        source_key="x1-parity-entry",
        symbol="BTCUSDT",
        kind="entry",
        side="BUY",
        quantity=Decimal("0.0200000000"),
        live_price=Decimal("64000.5000000000"),
        shadow_price=Decimal("63999.5000000000"),
        slippage_bps=Decimal("0.1562500000"),
        live_fee=Decimal("0.4480000000"),
        shadow_fee=Decimal("0.4479965000"),
        fee_diff=Decimal("0.0000035000"),
        book_age_ms=12,
    )
    Decision.objects.create(
        account=paper,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=10,
        take_profit=Decimal("70000"),
        stop_loss=Decimal("60000.5"),
        trade=trade,
    )
    return {"paper": paper, "live": live, "position": position, "closed": closed, "trade": trade}


def admin_models() -> list[type]:
    return [model for model in admin.site._registry if model._meta.app_label in APPS]


# What each list must show (plain figures, and at least one time to the second).
EXPECTED_IN_LIST = {
    "position": ["65000.5", "65100.25", "0.9975", "58800.45", "-0.26", "0.01", "Long 10x", plain_time(OPENED)],
    "trade": ["65000.5", "0.26", "-0.26", "0.01", "x1-abcdefghij…"],
    "pendingorder": ["60000.5", "70000", "0.005", "whole position"],
    "fundingpayment": ["0.0001", "65000.5", "0.065", plain_time(at(4))],
    "equitysnapshot": ["10012.5", "0.9975", "10013.4975", "65.0005", plain_time(at(5))],
    "pricecacheentry": ["65100.25", "65099.1", "65100.3", "0.0001", plain_time(at(7))],
    "exchangefill": ["64000.5", "0.02", "0.5"],
    "heartbeat": [plain_time(at(11))],
    "alert": ["liquidated at 58800.45"],
    "executionevent": ["filled 0.01 BTCUSDT at 65000.5"],
    "decision": ["70000", "60000.5", "0.01"],
    "parityrecord": ["64000.5", "63999.5", "0.15625", "0.0000035", "0.02"],
}


LISTS_WITHOUT_TIMES = {"account", "user", "group"}


def test_every_list_and_detail_page_reads_plainly(admin_client, rows):
    models = admin_models()
    assert len(models) >= 14, models  # the pages this test is about are all registered
    checked = 0
    for model in models:
        opts = model._meta
        listing = admin_client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        assert listing.status_code == 200, opts.label
        text = visible_text(listing.content.decode())
        assert_reads_plainly(text, f"{opts.label} list")
        for expected in EXPECTED_IN_LIST.get(opts.model_name, []):
            assert expected in text, f"{opts.label} list: {expected!r} missing"
        if opts.model_name not in LISTS_WITHOUT_TIMES:
            assert WITH_SECONDS.search(text), f"{opts.label} list: no timestamp with seconds"
        objects = list(model._default_manager.all())
        assert objects, f"{opts.label}: no rows to render"
        for obj in objects:
            page = admin_client.get(f"/admin/{opts.app_label}/{opts.model_name}/{obj.pk}/change/")
            assert page.status_code == 200, f"{opts.label} #{obj.pk}"
            detail = visible_text(page.content.decode())
            assert_reads_plainly(detail, f"{opts.label} #{obj.pk} detail")
            assert str(obj) in detail, f"{opts.label} #{obj.pk}: its title is not on its page"
            if any(f.get_internal_type() == "DateTimeField" for f in opts.fields):
                assert WITH_SECONDS.search(detail), f"{opts.label} #{obj.pk}: no timestamp with seconds"
            checked += 1
    assert checked >= len(models)  # every page had at least one detail page rendered


def test_position_pages_show_opened_at_and_plain_titles(admin_client, rows):
    closed = visible_text(admin_client.get(f"/admin/execution/position/{rows['closed'].pk}/change/").content.decode())
    assert "LONG 0 BTCUSDT @ 65095.6 [closed]".replace("BTCUSDT", "ETHUSDT") in closed
    assert "Opened at" in closed and plain_time(OPENED) in closed
    detail = visible_text(admin_client.get(f"/admin/execution/position/{rows['position'].pk}/change/").content.decode())
    for figure in ("0.01", "65000.5", "65.0005", "65100.25", "0.9975", "-0.26", "58800.45", "70000", "60000.5"):
        assert f"\n{figure}\n" in f"\n{detail}\n", figure
    assert "Net of fees and funding." in detail  # the model's help texts stay on the detail page
    listing = visible_text(admin_client.get("/admin/execution/position/").content.decode())
    assert "Opened at" in listing


def test_event_and_reconciliation_json_read_plainly(admin_client, rows):
    event = ExecutionEvent.objects.get(kind="trade.filled")
    detail = visible_text(admin_client.get(f"/admin/accounts/executionevent/{event.pk}/change/").content.decode())
    assert '"price": "65000.5"' in detail and '"quantity": "0.01"' in detail and '"fee": "0"' in detail
    run = ReconciliationRun.objects.get()
    detail = visible_text(admin_client.get(f"/admin/execution/reconciliationrun/{run.pk}/change/").content.decode())
    assert '"quantity": "0.02"' in detail and '"positionAmt": "-0.02"' in detail and '"entryPrice": "64000.5"' in detail


def test_account_pages_show_wallet_equity_realized_and_margin(admin_client, rows):
    listing = visible_text(admin_client.get("/admin/accounts/account/").content.decode())
    # paper: wallet = deposit 10000 + realized 12.5; equity adds the open uPnL 0.9975
    for header in ("Wallet", "Equity", "Open uPnL", "Realized PnL", "Margin in use"):
        assert header in listing
    for figure in ("10012.5", "10013.4975", "12.5", "65.0005", "0.9975"):
        assert f"\n{figure}\n" in f"\n{listing}\n", figure
    # live: the exchange wallet 5000.75, equity 4999.25 with uPnL -1.5, realized from its positions 3.25
    for figure in ("5000.75", "4999.25", "3.25", "64.0005", "-1.5"):
        assert f"\n{figure}\n" in f"\n{listing}\n", figure

    paper_page = admin_client.get(f"/admin/accounts/account/{rows['paper'].pk}/change/").content.decode()
    paper = visible_text(paper_page)
    assert "Balance" in paper and "now (paper ledger)" in paper
    for figure in ("10012.5", "10013.4975", "12.5", "65.0005"):
        assert f"\n{figure}\n" in f"\n{paper}\n", figure
    assert 'name="paper_balance" value="10000"' in paper_page  # the input without its storage zeros
    assert_reads_plainly(paper, "paper account page")

    live = visible_text(admin_client.get(f"/admin/accounts/account/{rows['live'].pk}/change/").content.decode())
    for figure in ("5000.75", "4999.25", "3.25", "64.0005", plain_time(at(1))):
        assert figure in live, figure
    assert_reads_plainly(live, "live account page")


def test_a_live_account_without_an_exchange_wallet_shows_the_last_snapshot_or_unknown(admin_client):
    unknown = LiveV1AccountFactory(name="live-new")
    page = visible_text(admin_client.get(f"/admin/accounts/account/{unknown.pk}/change/").content.decode())
    assert "unknown" in page
    EquitySnapshot.objects.create(
        account=unknown,
        taken_at=at(1),
        wallet=Decimal("700.5"),
        unrealized_pnl=Decimal("0"),
        equity=Decimal("700.5"),
        margin_in_use=Decimal("0"),
    )
    EquitySnapshot.objects.create(
        account=unknown,
        taken_at=at(2),
        wallet=Decimal("800.25"),
        unrealized_pnl=Decimal("0"),
        equity=Decimal("800.25"),
        margin_in_use=Decimal("0"),
    )
    page = visible_text(admin_client.get(f"/admin/accounts/account/{unknown.pk}/change/").content.decode())
    assert "800.25" in page and "700.5" not in page and "the last snapshot's" in page


def test_saving_an_account_page_unchanged_changes_nothing(admin_client, rows):
    """The plain input (10000, not 10000.00000000) still reads as unchanged: no update, no audit."""
    account = rows["paper"]
    form = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").context["adminform"].form
    assert form["paper_balance"].value() == "10000"
    # What the browser sends back: each input's shown value (a ticked box as "on", an unticked one not at all).
    shown = {name: form[name].value() for name in form.fields}
    data = {name: "on" if value is True else ("" if value is None else value) for name, value in shown.items()}
    data = {name: value for name, value in data.items() if value is not False}
    bound = type(form)(data=data, instance=Account.objects.get(pk=account.pk))
    assert bound.is_valid(), bound.errors
    # The blank secret inputs always count as changed (blank keeps the stored secret): the rest must not.
    assert [name for name in bound.changed_data if name not in Account.SECRET_FIELDS] == []
    events = ExecutionEvent.objects.filter(account=account).count()
    response = admin_client.post(f"/admin/accounts/account/{account.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ExecutionEvent.objects.filter(account=account).count() == events


def make_accounts(count: int) -> None:
    """`count` paper accounts (each with positions, their trades, legs, funding and events) and as
    many live ones."""
    for _ in range(count):
        account = PaperAccountFactory()
        for symbol in ("BTCUSDT", "ETHUSDT"):
            position = Position.objects.create(
                account=account,
                symbol=symbol,
                side="LONG",
                quantity=Decimal("1"),
                entry_price=Decimal("100"),
                leverage=5,
                margin=Decimal("20"),
                unrealized_pnl=Decimal("1.5"),
            )
            trade = Trade.objects.create(
                account=account,
                position=position,
                symbol=symbol,
                side="BUY",
                requested_quantity=Decimal("1"),
                quantity=Decimal("1"),
                price=Decimal("100"),
                client_order_id=f"x{account.pk}-{symbol}",
                status="filled",
            )
            PendingOrder.objects.create(
                account=account,
                position=position,
                trade=trade,
                symbol=symbol,
                kind="stop_loss",
                side="SELL",
                trigger_price=Decimal("90"),
                client_order_id=f"x{account.pk}-{symbol}-sl",
            )
            FundingPayment.objects.create(
                account=account,
                position=position,
                symbol=symbol,
                funding_time=at(1),
                rate=Decimal("0.0001"),
                mark_price=Decimal("100"),
                quantity=Decimal("1"),
                amount=Decimal("0.01"),
            )
            ExecutionEvent.objects.create(
                account=account, kind="trade.filled", subject_type="trade", subject_id=trade.pk
            )
        EquitySnapshot.objects.create(
            account=account,
            taken_at=at(1),
            wallet=Decimal("1"),
            unrealized_pnl=Decimal("0"),
            equity=Decimal("1"),
            margin_in_use=Decimal("0"),
        )
        LiveV1AccountFactory(owner=account.owner)


def list_queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/account/",
        "/admin/accounts/executionevent/",
        "/admin/execution/position/",
        "/admin/execution/trade/",
        "/admin/execution/pendingorder/",
        "/admin/execution/fundingpayment/",
        "/admin/execution/equitysnapshot/",
    ],
)
def test_list_query_count_does_not_grow_with_rows(admin_client, path):
    make_accounts(2)
    few = list_queries(admin_client, path)
    make_accounts(8)
    many = list_queries(admin_client, path)
    assert many == few, f"{path}: {few} queries for 4 accounts, {many} for 20"
