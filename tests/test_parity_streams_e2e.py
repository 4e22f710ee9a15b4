"""TP/SL parity end to end over real sockets: the simulator fires a stop at a given mark; the
user-data stream books the fill, the market stream's next mark is paper's trigger. The delay
is within one mark-stream interval (!markPrice@arr@1s)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from execution.models import ParityRecord
from execution.services import ExecutionService
from execution.services.parity import legs
from tests.factories import LiveV1AccountFactory
from tests.test_stream_market import StreamThread, wait_for
from tests.test_user_stream_e2e import UserStreamThread, connected

# The streams write from their own threads: PostgreSQL only (as the other stream e2e tests).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
STREAM_INTERVAL_MS = 1000


def no_sleep(seconds: float) -> None:
    return None


def test_a_stop_fired_by_the_simulator_is_timed_within_one_stream_interval(sim: Any, settings: Any) -> None:
    settings.ASTER_WS_URL = sim.ws_url
    account = LiveV1AccountFactory()
    remote = sim.exchange.accounts["demo-v1"]
    with UserStreamThread(sim.ws_url) as users, StreamThread(sim.ws_url):
        connected(users, account.pk)
        result = ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss="60000"
        )
        stop = next(leg for leg in result.pending_orders if leg.kind == "stop_loss")
        sim.exchange.set_price("BTCUSDT", Decimal("59900"))  # the exchange fires the stop at this mark
        order = next(o for o in remote.orders.values() if o.client_order_id == stop.client_order_id)
        assert order.status == "FILLED"
        record = wait_for(
            lambda: ParityRecord.objects.filter(kind="stop_loss", trigger_delay_ms__isnull=False).first(),
            "paper's trigger from the market stream",
            timeout=10,
        )
    # The mark first: paper's rule fires at once on the user-data path (no book there: the mark);
    # the fill first: the market stream completes it with paper's fill on the book it reads.
    at_once = record.note == legs.NO_BOOK_EVENT_PATH
    assert record.pending_order_id == stop.pk
    assert record.shadow_price == (Decimal("59900") if at_once else Decimal("59899.5")), record.note
    # The exchange fires on the same mark the stream publishes: paper's time is that mark's event
    # time (just before the fill, or at the next 1 s push after it).
    assert abs(record.trigger_delay_ms) <= STREAM_INTERVAL_MS, record.trigger_delay_ms
    assert record.live_price == Decimal("59899.5") and record.trigger_price_diff == Decimal("-0.5")
    entry = ParityRecord.objects.get(kind="entry")
    assert entry.slippage_bps == 0
