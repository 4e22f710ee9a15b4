"""TP/SL parity on paper's full rule (issue 18, review item 8): paper's `is_triggered` (the
cached price, or a completed minute candle that started after the leg was created) decides
when paper fires, and paper's leg fill rule (the book walk, no better than the trigger when
only a candle crossed) what it fills at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.models import ParityRecord, PendingOrder
from execution.services.exchange import public_client
from execution.services.paper.book import levels_for, walk_book
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
