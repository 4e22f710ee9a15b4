"""Review of the user-data stream (issue 12): each test reproduces one defect."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import Position, Trade
from execution.services import ExecutionService
from execution.services.user_stream import AccountEventApplier
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory
from tests.user_stream_helpers import order_frame, sim_order

FACTORIES = {"v1": (LiveV1AccountFactory, "demo-v1"), "v3": (LiveV3AccountFactory, "demo-v3")}


@pytest.fixture(params=["v1", "v3"])
def live(request, sim, db):
    factory, sim_name = FACTORIES[request.param]
    return factory(), sim.exchange.accounts[sim_name]


def no_sleep(seconds: float) -> None:
    return None


def open_protected(account, *, quantity: str = "0.02"):
    return ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity=quantity, leverage=5, take_profit="70000", stop_loss="60000"
    )


def legs(result):
    by_kind = {leg.kind: leg for leg in result.pending_orders}
    return by_kind["take_profit"], by_kind["stop_loss"]


def test_a_final_fill_delivered_before_an_earlier_partial_fill_books_both(sim, live):
    """Events are not guaranteed in order (ASTER_WS.md §2.2). When the TP's FILLED execution is
    applied before its earlier PARTIALLY_FILLED one (a later batch), the earlier execution was
    taken for 'already booked' (the leg was filled): its quantity was never booked and the
    position stayed open here, unprotected, while the exchange was flat."""
    account, remote = live
    tp, _sl = legs(open_protected(account))
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))  # the TP fires and fills 0.02 on the exchange
    tp_order = sim_order(remote, tp.client_order_id)
    assert tp_order.status == "FILLED"
    applier = AccountEventApplier(account.pk, grace_seconds=0)
    common = {"x": "TRADE", "last_price": "70500", "commission": "0.1", "realized": "100"}
    final = order_frame(tp_order, X="FILLED", last_quantity="0.015", cumulative="0.02", trade_id=2, **common)
    earlier = order_frame(
        tp_order, X="PARTIALLY_FILLED", last_quantity="0.005", cumulative="0.005", trade_id=1, **common
    )

    applier.apply_frames([final])
    applier.apply_frames([earlier])

    closes = Trade.objects.filter(reason="take_profit", status="filled")
    assert sum(t.quantity for t in closes) == Decimal("0.02")
    assert Position.objects.get().status == "closed"
