"""TP/SL parity on paper's full rule (issue 18, review item 8): paper's `is_triggered` (the
cached price, or a completed minute candle that started after the leg was created) decides
when paper fires, and paper's leg fill rule (the book walk, no better than the trigger when
only a candle crossed) what it fills at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.aster.replies import BookLevel, OrderBook
from execution.aster.streams.frames import MarkPriceUpdate
from execution.models import ParityRecord, PendingOrder
from execution.services import price_cache
from execution.services.exchange import public_client
from execution.services.paper.book import levels_for, walk_book
from execution.services.parity import legs
from execution.services.position_math import q
from tests.factories import LiveV1AccountFactory
from tests.test_parity_legs import deliver_fill, fire, open_protected, stream_mark


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]


def test_a_wick_seen_only_in_the_minute_candle_completes_the_shadow_at_the_candles_close(sim, live):
    account, remote = live
    take_profit = open_protected(account)["take_profit"]
    # The leg was placed minutes before the wick (paper's candle check counts only candles that
    # started after the order was created).
    PendingOrder.objects.filter(pk=take_profit.pk).update(created_at=datetime.now(tz=UTC) - timedelta(minutes=3))
    order = fire(sim, remote, take_profit, "70100")  # the exchange fires on the wick...
    sim.exchange.set_price("BTCUSDT", Decimal("69900"))  # ...and the price comes back at once
    deliver_fill(account, remote, order)
    stream_mark("69900", order.update_time_ms + 10)  # the mark stream never published the wick
    record = ParityRecord.objects.get(kind="take_profit")
    assert record.shadow_at is None  # the wick's minute is not complete yet
    minute_open = order.update_time_ms // 60_000 * 60_000
    closed_at = datetime.fromtimestamp((minute_open + 60_000) / 1000, tz=UTC)
    with time_machine.travel(closed_at + timedelta(seconds=2), tick=True):
        stream_mark("69900.1", minute_open + 62_000)  # the next minute: the wick's candle is complete
    record.refresh_from_db()
    assert record.shadow_at == closed_at  # paper's rule sees the candle once it is complete
    assert record.trigger_delay_ms == minute_open + 60_000 - order.update_time_ms
    # Paper fills on the book at its reaction, no better than the trigger (the price came back).
    assert record.shadow_price == Decimal("69899.5")
    assert record.trigger_price_diff == record.live_price - Decimal("70000")
    assert "candle" in record.note


def test_the_shadow_price_of_a_stop_is_paper_s_fill_on_the_book(sim, live):
    account, remote = live
    sim.exchange.symbols["BTCUSDT"].level_qty = Decimal("0.01")  # 0.02 walks two levels
    stop = open_protected(account)["stop_loss"]
    order = fire(sim, remote, stop, "59900")
    deliver_fill(account, remote, order)  # before the mark stream's next tick
    stream_mark("59900", order.update_time_ms + 500)
    record = ParityRecord.objects.get(kind="stop_loss")

    book = public_client().order_book("BTCUSDT", limit=50)
    filled, quote = walk_book(levels_for(book, "SELL"), Decimal("0.02"))
    assert filled == Decimal("0.02")
    assert record.shadow_price == q(quote / filled) == Decimal("59899")  # not the mark (59900)
    assert record.trigger_price_diff == record.live_price - Decimal("59900")  # against the crossing mark
    assert record.slippage_bps == 0 and record.note == ""
    assert record.book_age_ms is not None and record.trigger_delay_ms == 500


def test_a_candle_that_started_before_the_leg_does_not_fire_paper_s_rule(sim, live):
    account, remote = live
    take_profit = open_protected(account)["take_profit"]
    order = fire(sim, remote, take_profit, "70100")
    minute_open = datetime.fromtimestamp(order.update_time_ms // 60_000 * 60, tz=UTC)
    # Placed after the wick's minute began: paper cannot tell whether the high came before it.
    PendingOrder.objects.filter(pk=take_profit.pk).update(created_at=minute_open + timedelta(milliseconds=1))
    sim.exchange.set_price("BTCUSDT", Decimal("69900"))
    deliver_fill(account, remote, order)
    closed_at = minute_open + timedelta(minutes=1)
    with time_machine.travel(closed_at + timedelta(seconds=2), tick=True):
        stream_mark("69900.1", int(closed_at.timestamp() * 1000) + 2000)
    assert ParityRecord.objects.get(kind="take_profit").shadow_at is None


def test_the_user_data_path_reads_no_klines_and_no_book(sim, live, monkeypatch):
    account, remote = live
    calls: list[str] = []
    monkeypatch.setattr(legs.paper_prices, "candles", lambda *a, **k: calls.append("klines") or [])
    monkeypatch.setattr(legs, "book_covering", lambda *a, **k: calls.append("book"))
    stop = open_protected(account)["stop_loss"]
    order = fire(sim, remote, stop, "59900")
    update = MarkPriceUpdate("BTCUSDT", Decimal("59900"), None, None, 0, order.update_time_ms)
    price_cache.store_marks([update], received_at=datetime.now(tz=UTC))  # cached, no reaction
    deliver_fill(account, remote, order)
    record = ParityRecord.objects.get(kind="stop_loss")
    assert record.trigger_delay_ms == 0 and record.shadow_price == Decimal("59900")
    assert record.note == legs.NO_BOOK_EVENT_PATH and calls == []


def test_klines_are_tried_once_a_minute_per_symbol_when_the_venue_fails_them(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(legs.paper_prices, "candles", lambda symbol, **k: calls.append(symbol) or [])
    monkeypatch.setattr(legs, "_kline_attempts", {})
    now = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    for seconds in range(3):
        legs._candles("BTCUSDT", mark=True, now=now + timedelta(seconds=seconds), read_klines=True)
    legs._candles("BTCUSDT", mark=True, now=now + timedelta(minutes=1), read_klines=True)
    assert calls == ["BTCUSDT", "BTCUSDT"]


def test_a_book_too_thin_for_the_fill_keeps_the_trigger_price_and_says_so(sim, live, monkeypatch):
    account, remote = live
    stop = open_protected(account)["stop_loss"]
    order = fire(sim, remote, stop, "59900")
    deliver_fill(account, remote, order)
    thin = OrderBook("BTCUSDT", 1, order.update_time_ms, (BookLevel(Decimal("59890"), Decimal("0.01")),), ())
    monkeypatch.setattr(legs, "book_covering", lambda *a, **k: thin)
    stream_mark("59900", order.update_time_ms + 100)
    record = ParityRecord.objects.get(kind="stop_loss")
    assert record.shadow_price == Decimal("59900") and record.book_age_ms == 100
    assert record.note.startswith("the book holds 0.01 of 0.02")
