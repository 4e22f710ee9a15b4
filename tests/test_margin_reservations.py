"""Margin is reserved with the intent (issue #10, defect 2).

Many orders at once on one account never commit more margin than the wallet allows: an order
that is reserved but not yet booked counts against the margin available to the next one, paper
and live alike (the exchange's available balance lags the service's own in-flight orders).
"""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.models import Position, Trade
from execution.services import ExecutionService
from tests.factories import LiveV1AccountFactory, PaperAccountFactory

ORDERS = 20
# 0.01 BTC at 5x near 65,000: about 130 USDT of margin (and fees) each; 1,000 USDT holds 7.
QUANTITY, LEVERAGE, WALLET = "0.01", 5, Decimal("1000")


def no_sleep(seconds):
    return None


def fire(account) -> Counter:
    barrier = threading.Barrier(ORDERS)
    outcomes: list[str] = []

    def order() -> None:
        try:
            barrier.wait()
            ExecutionService(account, sleep=no_sleep).execute_market_order(
                symbol="BTCUSDT", side="BUY", quantity=QUANTITY, leverage=LEVERAGE
            )
            outcomes.append("filled")
        except (RiskCheckFailed, ExecutionError) as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=order) for _ in range(ORDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(outcomes)


def one_at_a_time_capacity(price: Decimal, fee_rate: Decimal) -> int:
    per_order = Decimal(QUANTITY) * price / LEVERAGE + Decimal(QUANTITY) * price * fee_rate
    return int(WALLET // per_order)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_paper_orders_never_commit_more_margin_than_the_wallet(sim, settings):
    sim.faults.latency_ms = 30  # the book walk overlaps the other orders' reservations
    account = PaperAccountFactory(paper_balance=WALLET, cooldown_seconds=0)
    outcomes = fire(account)
    position = Position.objects.get(account=account, status="open")
    account.refresh_from_db()
    assert position.margin <= account.paper_wallet
    capacity = one_at_a_time_capacity(position.entry_price, settings.PAPER_TAKER_FEE_RATE)
    assert outcomes["filled"] <= capacity
    assert outcomes == {"filled": outcomes["filled"], "INSUFFICIENT_MARGIN": ORDERS - outcomes["filled"]}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_live_orders_are_refused_here_not_by_the_exchange(sim, settings):
    remote = sim.exchange.accounts["demo-v1"]
    remote.balance = WALLET
    sim.faults.latency_ms = 30
    account = LiveV1AccountFactory(cooldown_seconds=0)
    outcomes = fire(account)
    # Every refusal is the service's own margin check: none reaches the exchange to be refused there.
    assert set(outcomes) <= {"filled", "INSUFFICIENT_MARGIN"}, outcomes
    assert Trade.objects.filter(account=account, status="filled").count() == outcomes["filled"] >= 1
    assert len(remote.orders) == outcomes["filled"]


def test_an_intent_in_flight_holds_its_margin_until_it_leaves_flight(market, db):
    from accounts.audit import transition

    account = PaperAccountFactory(paper_balance=WALLET, cooldown_seconds=0)
    stuck = Trade.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.1"),
        quantity=Decimal("0.1"),
        leverage=10,
        reserved_margin=Decimal("900"),
        client_order_id="stuck-1",
        status="unknown",
    )
    with pytest.raises(RiskCheckFailed) as denied:
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity=QUANTITY, leverage=5)
    assert denied.value.code == "INSUFFICIENT_MARGIN"
    transition(stuck, to_status="cancelled", account=account)  # resolved: it never executed
    result = ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity=QUANTITY, leverage=5)
    assert result.trade.status == "filled" and result.trade.reserved_margin > 0


def test_closing_reserves_nothing(market, db):
    account = PaperAccountFactory(paper_balance=WALLET, cooldown_seconds=0)
    service = ExecutionService(account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity=QUANTITY, leverage=5)
    assert service.close_position("BTCUSDT").trade.reserved_margin == 0
