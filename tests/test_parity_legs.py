"""TP/SL parity: a leg the simulator fires at a given mark, against paper's trigger rule on the
mark the stream caches (either order of arrival)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from execution.aster.streams.frames import MarkPriceUpdate
from execution.aster.streams.user_events import parse_user_frame
from execution.models import ParityRecord
from execution.services import ExecutionService, price_cache
from execution.services.parity import legs
from execution.services.user_stream.applier import apply_user_event
from execution.streams.market import react_where_paper_trades
from tests.factories import LiveV1AccountFactory
from tests.user_stream_helpers import fill_frames

STREAM_INTERVAL_MS = 1000  # !markPrice@arr@1s


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]


def open_protected(account: Any) -> dict[str, Any]:
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss="60000"
    )
    return {leg.kind: leg for leg in result.pending_orders}


def fire(sim: Any, remote: Any, leg: Any, price: str) -> Any:
    """The exchange moves to `price` and fires the leg there (at that mark)."""
    sim.exchange.set_price("BTCUSDT", Decimal(price))
    order = next(o for o in remote.orders.values() if o.client_order_id == leg.client_order_id)
    assert order.status == "FILLED"
    return order


def deliver_fill(account: Any, remote: Any, order: Any) -> None:
    """The user-data stream delivers the leg's executions, as the stream process applies them."""
    for frame in fill_frames(remote, order):
        event = parse_user_frame(frame)
        assert event is not None
        apply_user_event(account_id=account.pk, event=event)


def stream_mark(price: str, event_time_ms: int) -> None:
    """The market stream stores a mark and reacts to it (the stream process's two steps)."""
    update = MarkPriceUpdate("BTCUSDT", Decimal(price), None, None, 0, event_time_ms)
    changed = price_cache.store_marks([update], received_at=datetime.now(tz=UTC))
    react_where_paper_trades(changed)


def test_a_stop_fired_at_a_mark_is_timed_against_the_next_stream_mark(sim, live):
    account, remote = live
    stop = open_protected(account)["stop_loss"]
    order = fire(sim, remote, stop, "59900")
    deliver_fill(account, remote, order)  # the fill arrives before the mark stream's next tick
    record = ParityRecord.objects.get(kind="stop_loss")
    assert record.shadow_at is None and record.pending_order_id == stop.pk and record.trade.reason == "stop_loss"
    next_tick = (order.update_time_ms // STREAM_INTERVAL_MS + 1) * STREAM_INTERVAL_MS
    stream_mark("59900", next_tick)
    record.refresh_from_db()
    assert 0 < record.trigger_delay_ms <= STREAM_INTERVAL_MS
    assert record.live_price == Decimal("59899.5")
    assert record.trigger_price_diff == Decimal("-0.5")  # the stop sold half a tick-spread below the mark
    # Paper fills on the book it reads at its reaction (the simulator's static book): as live.
    assert record.shadow_price == Decimal("59899.5") and record.slippage_bps == 0 and record.note == ""
    assert record.side == "SELL" and record.quantity == Decimal("0.02") and record.live_fee > 0


def test_a_mark_already_cached_completes_the_record_at_once(sim, live):
    account, remote = live
    take_profit = open_protected(account)["take_profit"]
    order = fire(sim, remote, take_profit, "70100")
    stream_mark("70100", order.update_time_ms)
    deliver_fill(account, remote, order)
    record = ParityRecord.objects.get(kind="take_profit")
    assert record.trigger_delay_ms == 0 and record.shadow_price == Decimal("70100")
    assert record.live_price == Decimal("70099.5") and record.slippage_bps > 0
    # No network on the user-data event path: no book, the shadow is the price paper fired at.
    assert record.note == legs.NO_BOOK_EVENT_PATH and record.book_age_ms is None


def test_a_mark_that_does_not_cross_leaves_the_record_waiting(sim, live):
    account, remote = live
    stop = open_protected(account)["stop_loss"]
    order = fire(sim, remote, stop, "59900")
    deliver_fill(account, remote, order)
    stream_mark("60100", order.update_time_ms + 10)  # paper's mark has not reached the stop yet
    record = ParityRecord.objects.get(kind="stop_loss")
    assert record.shadow_at is None and record.trigger_delay_ms is None
    stream_mark("60000", order.update_time_ms + 20)  # at the stop: paper's rule fires
    record.refresh_from_db()
    assert record.trigger_delay_ms == 20


def test_the_entry_fill_on_the_user_stream_adds_no_second_record(sim, live):
    account, remote = live
    open_protected(account)
    entry = next(o for o in remote.orders.values() if o.type == "MARKET")
    deliver_fill(account, remote, entry)
    assert list(ParityRecord.objects.values_list("kind", flat=True)) == ["entry"]


def test_a_failure_in_the_leg_shadow_never_stops_the_booking(sim, live, monkeypatch):
    account, remote = live
    stop = open_protected(account)["stop_loss"]

    def broken(leg: Any) -> Any:
        raise RuntimeError("cache down")

    monkeypatch.setattr(legs, "_reading", broken)
    order = fire(sim, remote, stop, "59900")
    deliver_fill(account, remote, order)
    stop.refresh_from_db()
    assert stop.status == "filled"
    assert not ParityRecord.objects.filter(kind="stop_loss").exists()
    assert legs.complete_trigger_shadows({"BTCUSDT"}) == 0
