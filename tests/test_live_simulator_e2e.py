"""Live execution end to end against the local simulator over HTTP, V1 and V3 accounts."""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from execution.exceptions import RiskCheckFailed
from execution.models import PendingOrder, Position, Trade
from execution.services import ExecutionService
from execution.services.kill_switch import halt_trading
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory

FACTORIES = {"v1": (LiveV1AccountFactory, "demo-v1"), "v3": (LiveV3AccountFactory, "demo-v3")}


@pytest.fixture(params=["v1", "v3"])
def live(request, sim, db):
    factory, sim_name = FACTORIES[request.param]
    return factory(), sim.exchange.accounts[sim_name]


def no_sleep(seconds):
    return None


def test_live_order_with_protection_lands_on_the_exchange(sim, live):
    account, remote = live
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss="60000"
    )
    assert remote.positions["BTCUSDT"].amount == Decimal("0.02")
    assert remote.leverage["BTCUSDT"] == 5 and remote.margin_type["BTCUSDT"] == "ISOLATED"
    resting = {o.client_order_id: o for o in remote.orders.values() if o.is_open}
    assert set(resting) == {p.client_order_id for p in result.pending_orders}
    assert all(o.close_position and o.working_type == "MARK_PRICE" for o in resting.values())
    position = Position.objects.get()
    assert position.entry_price == remote.positions["BTCUSDT"].entry
    assert result.trade.fee > 0  # from userTrades


def test_live_close_position_flattens_the_exchange(sim, live):
    account, remote = live
    svc = ExecutionService(account, sleep=no_sleep)
    svc.execute_market_order(symbol="ETHUSDT", side="SELL", quantity="1", leverage=3)
    closed = svc.close_position("ETHUSDT")
    assert remote.positions["ETHUSDT"].amount == 0
    assert closed.position.status == "closed" and closed.trade.reduce_only


def test_503_after_accept_leaves_exactly_one_order_and_a_filled_trade(sim, live):
    account, remote = live
    sim.faults.order_503_after_accept = 1
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )
    assert result.trade.status == "filled"
    assert len(remote.orders) == 1 and remote.positions["BTCUSDT"].amount == Decimal("0.01")


def test_kill_switch_cancels_entry_orders_and_keeps_stops(sim, live):
    account, remote = live
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
    )
    entry = sim.exchange.place_order(
        remote,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.01",
            "price": "50000",
            "newClientOrderId": "resting-entry",
        },
    )
    report = halt_trading(account=account, reason="test")
    assert report.cancelled == ["resting-entry"] and entry.status == "CANCELED"
    stop = PendingOrder.objects.get()
    assert report.kept == [stop.client_order_id]
    assert all(path != "/fapi/v1/allOpenOrders" for _, path in sim.server.request_log)
    account.refresh_from_db()
    assert account.trading_state == "halted"
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "TRADING_HALTED"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_decisions_with_a_cooldown_execute_exactly_once(sim):
    from decisions.engine import DecisionEngine

    account = LiveV1AccountFactory(cooldown_seconds=60)
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def submit(index: int) -> None:
        try:
            barrier.wait()
            decision = DecisionEngine().submit(
                account,
                symbol="BTCUSDT",
                action="open_long",
                quantity=Decimal("0.01"),
                leverage=5,
                idempotency_key=f"decision-{index}",
            )
            outcomes.append(decision.status if decision.status != "rejected" else decision.reason.split(":")[0])
        except Exception as exc:
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(outcomes) == {"executed": 1, "COOLDOWN_ACTIVE": 9}
    assert Trade.objects.filter(status="filled").count() == 1
    assert len(sim.exchange.accounts["demo-v1"].orders) == 1
