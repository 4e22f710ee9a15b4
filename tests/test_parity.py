"""Paper<->live parity of live market orders, against the simulator over HTTP."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from execution.models import ParityRecord
from execution.services import ExecutionService
from tests.factories import LiveV1AccountFactory

BTC_ASK0 = Decimal("65000.5")  # the simulator's BTCUSDT: 65000, half spread 5 ticks of 0.1
BTC_BID0 = Decimal("64999.5")


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]


MATCHING_SECONDS = 0.02  # a market order's way through a venue's risk checks and matching


def move_book_at_submission(sim: Any, symbol: str, by: Decimal) -> None:
    """Arrange the move: the MARKET order takes MATCHING_SECONDS through the venue (which waits
    for nothing else: it knows nothing of the parity read), and the price, with the whole book,
    moves by `by` just before the order walks it. The parity read was started before the send,
    so it is served the book from before the move. (With no matching time at all, the read and
    the order race on the local simulator: the read thread and the order share the GIL.)"""
    sym = sim.exchange.symbols[symbol]
    place = sim.exchange.place_order

    def place_order(account: Any, params: dict[str, str]) -> Any:
        if params.get("type") == "MARKET":
            time.sleep(MATCHING_SECONDS)
            sim.exchange.set_price(symbol, sym.price + by)
        return place(account, params)

    sim.exchange.place_order = place_order


def test_a_static_book_gives_zero_slippage_for_entries_and_closes(sim, live):
    account, _remote = live
    svc = ExecutionService(account, sleep=no_sleep)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5)
    svc.close_position("BTCUSDT")
    entry, close = ParityRecord.objects.order_by("id")
    assert (entry.kind, entry.side, close.kind, close.side) == ("entry", "BUY", "close", "SELL")
    assert entry.live_price == entry.shadow_price == BTC_ASK0
    assert close.live_price == close.shadow_price == BTC_BID0
    for record in (entry, close):
        assert record.slippage_bps == 0
        assert abs(record.fee_diff) < Decimal("0.00000001")  # the simulator's taker rate is paper's
        assert record.trade is not None and record.trade.client_order_id == record.source_key
        assert record.book_age_ms is not None and not record.stale


def test_a_book_that_moves_against_a_buy_shows_positive_slippage_of_the_move(sim, live):
    account, _remote = live
    move_book_at_submission(sim, "BTCUSDT", Decimal("65"))
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    record = ParityRecord.objects.get()
    assert record.shadow_price == BTC_ASK0 and record.live_price == BTC_ASK0 + 65
    assert record.slippage_bps == (Decimal("65") / BTC_ASK0 * 10000).quantize(Decimal("0.0001"))
    assert record.slippage_bps > 0
    assert record.fee_diff > 0  # the same rate on a dearer fill


def test_a_book_that_moves_against_a_sell_is_also_worse_than_paper(sim, live):
    account, _remote = live
    move_book_at_submission(sim, "BTCUSDT", Decimal("-130"))
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="SELL", quantity="0.02", leverage=5
    )
    record = ParityRecord.objects.get()
    assert record.live_price == BTC_BID0 - 130 and record.shadow_price == BTC_BID0
    assert record.slippage_bps == (Decimal("130") / BTC_BID0 * 10000).quantize(Decimal("0.0001"))


def test_a_book_that_moves_in_favour_gives_negative_slippage(sim, live):
    account, _remote = live
    move_book_at_submission(sim, "BTCUSDT", Decimal("-65"))
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    assert ParityRecord.objects.get().slippage_bps == (Decimal("-65") / BTC_ASK0 * 10000).quantize(Decimal("0.0001"))


def test_a_flip_is_recorded_as_a_flip(sim, live):
    account, _remote = live
    svc = ExecutionService(account, sleep=no_sleep)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5)
    svc.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.05", leverage=5)
    svc.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.01", leverage=5)
    assert list(ParityRecord.objects.order_by("id").values_list("kind", flat=True)) == ["entry", "flip", "entry"]


def test_a_book_older_than_the_bound_is_marked_stale(sim, live, settings, monkeypatch):
    from execution.services.parity import market_orders

    account, _remote = live
    settings.PARITY_MAX_BOOK_AGE_MS = 1000
    real = market_orders.read_book

    def old_book(order: Any, base_url: str) -> Any:
        from dataclasses import replace

        book = real(order, base_url).parse()
        return replace(book, time_ms=book.time_ms - 5000)

    monkeypatch.setattr(market_orders, "read_book", old_book)
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    record = ParityRecord.objects.get()
    assert record.stale and record.book_age_ms >= 4000


def test_a_failed_book_read_never_fails_the_order(sim, live, monkeypatch, caplog):
    from execution.metrics import PARITY_FAILURES
    from execution.services.parity import market_orders

    account, remote = live
    before = PARITY_FAILURES.labels(stage="book")._value.get()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("depth down")

    monkeypatch.setattr(market_orders, "read_book", broken)
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    assert result.trade.status == "filled" and remote.positions["BTCUSDT"].amount == Decimal("0.02")
    record = ParityRecord.objects.get()  # the fill is still counted, without a shadow
    assert record.shadow_price is None and record.slippage_bps is None and record.fee_diff == 0
    assert record.note == "no book: the read failed"
    assert PARITY_FAILURES.labels(stage="book")._value.get() == before + 1
    assert "parity book failed" in caplog.text


def test_a_failed_write_never_fails_the_order(sim, live, monkeypatch):
    from execution.services.parity import market_orders

    account, _remote = live

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(market_orders, "kind_after", broken)
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    assert result.trade.status == "filled" and not ParityRecord.objects.exists()


def test_parity_off_records_nothing(sim, live, settings):
    account, _remote = live
    settings.PARITY_ENABLED = False
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
    )
    assert not ParityRecord.objects.exists()


def test_a_rejected_order_records_nothing_and_raises_as_before(sim, live):
    from execution.exceptions import ExchangeRejected

    account, _remote = live
    sim.faults.aim(kind="-2019", path="order", order_type="MARKET")
    with pytest.raises(ExchangeRejected):
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5
        )
    assert not ParityRecord.objects.exists()


@pytest.mark.parametrize(
    ("side", "reduce_only", "position", "kind"),
    [
        ("BUY", False, ("LONG", Decimal("0.5")), "entry"),  # opened
        ("BUY", False, ("LONG", Decimal("1.5")), "entry"),  # added to
        ("SELL", True, None, "close"),
        ("SELL", False, None, "close"),  # closed exactly
        ("SELL", False, ("LONG", Decimal("0.5")), "close"),  # 0.5 of 1: a partial close
        ("SELL", False, ("SHORT", Decimal("0.3")), "flip"),  # 0.2 long closed, 0.3 short opened
        ("BUY", False, ("LONG", Decimal("0.3")), "flip"),
        ("BUY", True, ("SHORT", Decimal("0.2")), "close"),
    ],
)
def test_the_kind_is_judged_on_the_position_after_the_fill(side, reduce_only, position, kind):
    from execution.services.adapters.base import MarketOrder
    from execution.services.parity.market_orders import kind_after

    order = MarketOrder("BTCUSDT", side, Decimal("0.5"), "x1-a", 5, reduce_only=reduce_only)
    assert kind_after(order, Decimal("0.5"), position) == kind


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_record_written_on_its_own_leaves_the_connection_committing_synchronously():
    from django.db import connection

    from execution.services.parity.recording import save_record

    account = LiveV1AccountFactory()
    record = save_record(account_id=account.pk, source_key="k", symbol="BTCUSDT", kind="entry", quantity=Decimal("1"))
    assert record is not None and ParityRecord.objects.filter(pk=record.pk).exists()
    assert save_record(account_id=account.pk, source_key="k", symbol="BTCUSDT", kind="entry", quantity=1) is None
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
