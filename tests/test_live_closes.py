"""Closes leave nothing behind on the exchange (issue #10, defect 1).

Every close the service makes (close, flip, reduce to zero, a protective leg's fill booked by
reconciliation, a reconciliation close) cancels that position's resting legs on the exchange once
its transaction has committed. A leg whose cancel fails stays marked and is retried by
reconciliation; a leg of ours that is final locally but still rests is a difference too.
"""

from decimal import Decimal

import pytest

from execution.models import ExecutionEvent, PendingOrder, Position
from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from tests.factories import LiveV1AccountFactory


def no_sleep(seconds):
    return None


@pytest.fixture
def live(sim, db):
    return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]


def resting(remote):
    return {o.client_order_id for o in remote.orders.values() if o.is_open}


def test_an_old_stop_does_not_close_the_next_position(sim, live):
    account, remote = live
    service = ExecutionService(account, sleep=no_sleep)
    first = service.execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="90000", stop_loss="60000"
    )
    service.close_position("BTCUSDT")
    assert resting(remote) == set()  # both legs cancelled on the exchange with the close
    assert set(
        PendingOrder.objects.filter(pk__in=[p.pk for p in first.pending_orders]).values_list("status", flat=True)
    ) == {"cancelled"}

    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5)
    sim.exchange.set_price("BTCUSDT", Decimal("59000"))  # through the old stop
    assert remote.positions["BTCUSDT"].amount == Decimal("0.02")  # the new position is untouched
    assert Position.objects.get(status="open").quantity == Decimal("0.02")


def test_a_flip_cancels_the_old_sides_legs(sim, live):
    account, remote = live
    service = ExecutionService(account, sleep=no_sleep)
    service.execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="90000", stop_loss="60000"
    )
    service.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.03", leverage=5)
    assert remote.positions["BTCUSDT"].amount == Decimal("-0.02")
    assert resting(remote) == set()


def test_new_protection_replaces_the_old_legs_on_the_exchange(sim, live):
    account, remote = live
    service = ExecutionService(account, sleep=no_sleep)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000")
    added = service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="61000")
    assert resting(remote) == {p.client_order_id for p in added.pending_orders}


def test_a_cancel_that_fails_is_retried_by_reconciliation(sim, live):
    account, remote = live
    service = ExecutionService(account, sleep=no_sleep)
    opened = service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000")
    sim.faults.cancel_error = 1  # the next cancel answers a server error
    service.close_position("BTCUSDT")
    leg = PendingOrder.objects.get(pk=opened.pending_orders[0].pk)
    assert leg.status == "cancelled" and leg.venue_cancel_pending
    assert ExecutionEvent.objects.filter(kind="pendingorder.venue_cancel_failed", subject_id=leg.pk).exists()
    assert resting(remote) == {leg.client_order_id}

    run = reconcile_account(account)
    assert resting(remote) == set()
    leg.refresh_from_db()
    assert not leg.venue_cancel_pending
    assert run.items.filter(kind="protective_order_left_resting", outcome="repaired").exists()


def test_a_resting_leg_of_ours_that_is_final_locally_is_cancelled(sim, live):
    account, remote = live
    service = ExecutionService(account, sleep=no_sleep)
    opened = service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000")
    leg = opened.pending_orders[0]
    # Locally final (say an operator cancelled it in the database), still resting on the exchange.
    PendingOrder.objects.filter(pk=leg.pk).update(status="cancelled")
    run = reconcile_account(account)
    assert leg.client_order_id not in resting(remote)
    assert run.items.filter(kind="protective_order_left_resting").exists()
