"""The parity review's findings (issue 18), each with the test that failed before its fix."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from execution.models import ParityRecord
from execution.services import ExecutionService
from execution.services.parity import market_orders
from tests.factories import LiveV1AccountFactory
from tests.test_parity_shadow import mirrors_run_at_once  # noqa: F401  (a fixture)

BTC_ASK0 = Decimal("65000.5")


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory()


def test_a_book_moved_at_submission_shows_the_arranged_slippage(sim, live):
    """The book moves when the order is matched (20 ms after it reached the venue, which waits
    for nothing else): the shadow walks the book from before the send, not the post-fill one."""
    symbol = "BTCUSDT"
    sym = sim.exchange.symbols[symbol]
    place = sim.exchange.place_order

    def place_order(account: Any, params: dict[str, str]) -> Any:
        if params.get("type") == "MARKET":
            time.sleep(0.02)  # the order's way through the venue's matching (tests/test_parity.py)
            sim.exchange.set_price(symbol, sym.price + Decimal("65"))
        return place(account, params)

    sim.exchange.place_order = place_order
    ExecutionService(live, sleep=no_sleep).execute_market_order(symbol=symbol, side="BUY", quantity="0.02", leverage=5)
    record = ParityRecord.objects.get()
    assert record.live_price == BTC_ASK0 + 65
    assert record.shadow_price == BTC_ASK0, "the shadow walked the book read AFTER the send: it saw the move"
    assert record.slippage_bps > 0


def test_a_slow_book_read_delays_neither_the_booking_nor_the_stop_loss(sim, live, monkeypatch, settings):
    """The order is booked and its stop-loss placed while the book read still hangs; the record
    is written after the protection (here: without a book, the read did not finish in time)."""
    settings.PARITY_BOOK_WAIT_SECONDS = 0.3
    release = threading.Event()
    real = market_orders.read_book
    stop_at: list[float] = []
    place = sim.exchange.place_order

    def slow_book(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real(*args, **kwargs)

    def place_order(account: Any, params: dict[str, str]) -> Any:
        if params.get("type") == "STOP_MARKET":
            stop_at.append(time.monotonic())
        return place(account, params)

    monkeypatch.setattr(market_orders, "read_book", slow_book)
    sim.exchange.place_order = place_order
    try:
        started = time.monotonic()
        result = ExecutionService(live, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, stop_loss="60000"
        )
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert result.trade.status == "filled"
    assert stop_at and stop_at[0] - started < 0.25, "the stop-loss waited for parity's book read"
    assert elapsed < 0.3 + 0.25, f"the order path waited {elapsed:.2f} s for parity"
    record = ParityRecord.objects.get()
    assert record.shadow_price is None and record.note == market_orders.NO_BOOK_LATE


def test_hung_book_reads_do_not_starve_the_next_orders(sim, live, monkeypatch, settings):
    """Busy (hung) readers: the next order's read is skipped at once ("no book"), never queued
    behind them; once the venue answers again the reads resume."""
    settings.PARITY_BOOK_WAIT_SECONDS = 0.1
    release = threading.Event()
    real = market_orders.read_book
    calls = {"n": 0}

    def sometimes_hung(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= market_orders.BOOK_READERS:
            release.wait(20)  # a venue that stops answering depth for a while
        return real(*args, **kwargs)

    monkeypatch.setattr(market_orders, "read_book", sometimes_hung)
    svc = ExecutionService(live, sleep=no_sleep)
    try:
        for _ in range(market_orders.BOOK_READERS):
            svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.002", leverage=5)
        started = time.monotonic()
        svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.002", leverage=5)
        assert time.monotonic() - started < 0.1 + 0.2
        busy = ParityRecord.objects.order_by("-id").first()
        assert busy is not None and busy.note == market_orders.NO_BOOK_BUSY and calls["n"] == market_orders.BOOK_READERS
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while market_orders._free_readers._value < market_orders.BOOK_READERS and time.monotonic() < deadline:
        time.sleep(0.01)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.002", leverage=5)  # depth answers again
    latest = ParityRecord.objects.order_by("-id").first()
    assert latest is not None and latest.shadow_price is not None
    assert list(ParityRecord.objects.values_list("note", flat=True)).count(market_orders.NO_BOOK_LATE) == 4


def test_the_book_readers_use_short_timeouts_and_no_retry(sim, live):
    client = market_orders._book_client(sim.url)
    assert client.timeout == (market_orders.BOOK_CONNECT_TIMEOUT, market_orders.BOOK_READ_TIMEOUT)
    assert client.max_get_attempts == 1 and max(client.timeout) <= 1.0
    book = client.order_book("BTCUSDT", limit=20)  # the lean reader, against the simulator
    assert book.asks[0].price == BTC_ASK0 and book.time_ms > 0


def test_the_lean_book_reader_reports_a_dead_venue_as_a_transport_error():
    from execution.aster.errors import AsterTransportError

    client = market_orders._book_client("http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(AsterTransportError):
        client.order_book("BTCUSDT", limit=20)


def test_the_book_age_is_on_the_exchange_clock(sim, live, monkeypatch):
    """Our clock runs 10 s behind the venue's; the client measured the offset (sync_time). The
    send is timed on the offset-corrected clock, like the book's E/T: a fresh book is fresh."""
    from types import SimpleNamespace

    behind = 10.0
    real_time = time.time
    service = ExecutionService(live, sleep=no_sleep)
    client = service.adapter.client  # type: ignore[attr-defined]
    monkeypatch.setattr(client, "_clock", lambda: real_time() - behind)
    monkeypatch.setattr(client, "_time_offset_ms", int(behind * 1000))  # what sync_time measures
    skewed = SimpleNamespace(time=lambda: real_time() - behind, monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(market_orders, "time", skewed)  # the module's local clock, skewed too
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5)
    record = ParityRecord.objects.get()
    assert record.book_age_ms is not None and abs(record.book_age_ms) < 1000 and not record.stale


def _paired(**paper_fields: Any) -> tuple[Any, Any]:
    from execution.services.parity.shadow_accounts import set_shadow_paper_account
    from tests.factories import PaperAccountFactory

    live = LiveV1AccountFactory()
    paper = PaperAccountFactory(owner=live.owner)
    set_shadow_paper_account(account=live, shadow=paper)
    live.refresh_from_db()
    return live, paper


def test_the_database_refuses_an_account_shadowing_itself(db):
    from django.db import IntegrityError, transaction

    from decisions.services import _shadow_refusal

    live, _paper = _paired()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(live).objects.filter(pk=live.pk).update(shadow_paper_account=live.pk)
    assert _shadow_refusal(live, live) == "it is the live account itself"  # and the mirror says no too


@pytest.mark.usefixtures("mirrors_run_at_once")
@pytest.mark.parametrize("change", ["owner", "live"])
def test_the_shadow_is_re_checked_at_mirror_time(sim, db, change):
    """Paired correctly, then changed behind the pairing's back (e.g. in the admin): the live
    decision is not mirrored to another owner's account, a live account, or itself."""
    from decisions.models import Decision
    from decisions.services import submit_decision
    from tests.factories import UserFactory

    live, paper = _paired()
    accounts = type(paper).objects
    if change == "owner":
        accounts.filter(pk=paper.pk).update(owner=UserFactory())
    else:
        accounts.filter(pk=paper.pk).update(is_paper_trading=False)
    submit_decision(account=live, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.02"), leverage=5)
    assert Decision.objects.filter(account=live).count() == 1, "the decision was mirrored onto the live account itself"
    assert not Decision.objects.filter(account=paper).exists(), "mirrored to an account it may no longer use"


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661", "1\n", "99999999999999999999999"])
def test_parity_report_refuses_a_non_ascii_or_huge_account_cleanly(db, raw):
    from io import StringIO

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--account"):
        call_command("parity_report", "--account", raw, stdout=StringIO())


@pytest.mark.parametrize("raw", ["\u0661d", "1d\n"])
def test_since_takes_ascii_durations_only(raw):
    from django.core.exceptions import ValidationError

    from execution.services.parity.report import parse_since

    with pytest.raises(ValidationError):
        parse_since(raw)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00"])
def test_api_since_far_past_is_a_clear_answer(db, since):
    from rest_framework.test import APIClient

    account = LiveV1AccountFactory()
    client = APIClient()
    client.force_authenticate(account.owner)
    reply = client.get(f"/api/accounts/{account.pk}/parity/", {"since": since})
    assert reply.status_code in (200, 400), reply.content
    if reply.status_code == 400:
        assert "since" in reply.json()


def test_leg_parity_runs_after_the_siblings_cancel(monkeypatch):
    """The sibling leg's cancel (a position is left unprotected or over-protected until it is
    gone) comes before parity's reads and write."""
    from types import SimpleNamespace

    from execution.services.user_stream import applier

    calls: list[str] = []
    booked = SimpleNamespace(trade=object(), legs_made_final=True, applied=SimpleNamespace(reconcile=False))
    monkeypatch.setattr(applier, "apply_execution", lambda **kwargs: booked)
    monkeypatch.setattr(applier, "cancel_legs_left_resting", lambda **kwargs: calls.append("cancel") or [])
    monkeypatch.setattr(applier, "record_leg_fill", lambda **kwargs: calls.append("parity"))
    adapter = SimpleNamespace(get=lambda: SimpleNamespace(account=None))
    applier._apply_order_update(1, SimpleNamespace(is_fill=True), adapter)  # type: ignore[arg-type]
    assert calls == ["cancel", "parity"]


def test_the_report_lists_the_newest_decision_mismatches(db, monkeypatch):
    from accounts.audit import record_event
    from execution.services.parity import report

    account = LiveV1AccountFactory()
    monkeypatch.setattr(report, "MISMATCH_LIMIT", 3)
    for n in range(5):
        record_event(account=account, kind=report.DECISION_MISMATCH, message=str(n), data={"decision": n})
    listed = [m.decision for m in report.decision_mismatches(account_id=account.pk)]
    assert listed == [2, 3, 4]


def test_rows_without_a_shadow_stay_out_of_the_fee_sums(db):
    """No book, a leg still waiting for paper's trigger, a settlement without a mark: their fee
    difference is not the live fee whole, and the report's sums leave them out."""
    from execution.services.parity.recording import save_record
    from execution.services.parity.report import parity_report

    account = LiveV1AccountFactory()
    common = {"account_id": account.pk, "symbol": "BTCUSDT", "quantity": Decimal("1")}
    save_record(
        source_key="a",
        kind="entry",
        live_price=Decimal("100"),
        shadow_price=Decimal("100"),
        live_fee=Decimal("0.05"),
        shadow_fee=Decimal("0.04"),
        fee_diff=Decimal("0.01"),
        **common,
    )
    save_record(
        source_key="b",
        kind="entry",
        live_price=Decimal("100"),
        live_fee=Decimal("0.05"),
        fee_diff=Decimal("0.05"),
        note="no book",
        **common,
    )  # as the old code wrote it
    save_record(
        source_key="c",
        kind="stop_loss",
        live_price=Decimal("90"),
        live_fee=Decimal("0.05"),
        fee_diff=Decimal("0.05"),
        **common,
    )  # waiting for the trigger
    save_record(source_key="d", kind="funding", live_funding=Decimal("0.3"), fee_diff=Decimal("0.3"), **common)
    groups = {g.kind: g for g in parity_report(account_id=account.pk).groups}
    assert groups["entry"].fee_diff == Decimal("0.01") and groups["entry"].count == 2
    assert groups["stop_loss"].fee_diff == 0 and groups["funding"].fee_diff == 0


def test_a_leg_waiting_for_its_trigger_and_a_funding_without_a_mark_carry_no_fee_difference(db):
    from types import SimpleNamespace

    from execution.services.parity import funding
    from tests.test_parity_funding import open_position

    account = LiveV1AccountFactory()
    open_position(account, "BTCUSDT", "LONG", "1")  # and no cached mark for it
    usdt = SimpleNamespace(balance_change=Decimal("-0.5"))
    event = SimpleNamespace(
        reason="FUNDING_FEE", positions=[], event_time_ms=1_700_000_000_000, balance=lambda asset: usdt
    )
    fields = funding.funding_fields(account_id=account.pk, event=event)  # type: ignore[arg-type]
    assert fields is not None and fields["shadow_funding"] is None and fields["fee_diff"] == 0


def test_the_live_decision_returns_without_waiting_for_its_shadow(
    sim, db, monkeypatch, django_capture_on_commit_callbacks
):
    """The shadow is queued after the live decision's commit (a Celery task), not run before
    submit_decision returns; the task then mirrors it."""
    from decisions import services as decision_services
    from decisions import tasks
    from decisions.models import Decision
    from decisions.services import submit_decision
    from execution.services.adapters.paper import PaperExecutionAdapter

    live, paper = _paired()
    real = PaperExecutionAdapter.execute_market_order

    def slow(self: Any, order: Any) -> Any:
        time.sleep(2)  # a paper book read over REST on a slow venue
        return real(self, order)

    monkeypatch.setattr(PaperExecutionAdapter, "execute_market_order", slow)
    queued: list[tuple[str, list[int]]] = []
    broker = SimpleNamespace(send_task=lambda name, args: queued.append((name, args)))
    monkeypatch.setattr(decision_services, "current_app", broker)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        started = time.monotonic()
        decision = submit_decision(
            account=live, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.02"), leverage=5
        ).decision
        elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"the live decision returned after {elapsed:.2f} s: it waited for the paper shadow"
    assert not Decision.objects.filter(account=paper).exists()
    for callback in callbacks:
        callback()
    assert queued == [(tasks.mirror_decision_to_shadow.name, [decision.pk])]
    monkeypatch.setattr(PaperExecutionAdapter, "execute_market_order", real)
    tasks.mirror_decision_to_shadow(decision.pk)  # what the worker runs
    assert Decision.objects.get(account=paper).status == "executed"
