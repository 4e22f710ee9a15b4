"""Review of the user-data stream (issue 12): each test reproduces one defect."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import PendingOrder, Position, Trade
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


def test_a_partial_fill_applied_after_reconciliation_corrected_the_quantity_is_not_reduced_twice(sim, live):
    """A partial TP execution still buffered in the stream (or applied late) while a reconciliation
    (the resync of a reconnect, or the beat) reads the exchange: reconciliation sets the local
    quantity to the exchange's (no trade), then the stream books the same execution and reduces
    the position again."""
    from execution.services.reconciliation import reconcile_account

    account, remote = live
    tp, _sl = legs(open_protected(account))
    tp_order = sim_order(remote, tp.client_order_id)
    remote.positions["BTCUSDT"].amount -= Decimal("0.005")  # the TP executed 0.005 on the exchange
    tp_order.status, tp_order.executed_qty, tp_order.cum_quote = "PARTIALLY_FILLED", Decimal("0.005"), Decimal("350")
    partial = order_frame(
        tp_order,
        x="TRADE",
        X="PARTIALLY_FILLED",
        last_quantity="0.005",
        cumulative="0.005",
        last_price="70000",
        trade_id=1,
        commission="0.1",
        realized="100",
    )
    reconcile_account(account, sleep=no_sleep)  # the resync on connect, before the buffered event is applied
    assert Position.objects.get().quantity == Decimal("0.015")

    AccountEventApplier(account.pk, grace_seconds=3600, reconcile=lambda pk: None).apply_frames([partial])

    assert Position.objects.get().quantity == Decimal("0.015")  # as on the exchange
    closes = Trade.objects.filter(reason="take_profit")
    assert [(t.client_order_id, t.quantity) for t in closes] == [(f"{tp.client_order_id}-f", Decimal("0.005"))]


def partially_fill(remote, order, quantity: str, cumulative: str) -> None:
    """The exchange executed `quantity` more of a resting TP of a long (its events not applied)."""
    remote.positions["BTCUSDT"].amount -= Decimal(quantity)
    order.status, order.executed_qty = "PARTIALLY_FILLED", Decimal(cumulative)
    order.cum_quote = Decimal(cumulative) * 70000


def tp_frame(order, *, status: str, last: str, cumulative: str, trade_id: int) -> str:
    return order_frame(
        order,
        x="TRADE",
        X=status,
        last_quantity=last,
        cumulative=cumulative,
        last_price="70000",
        trade_id=trade_id,
        commission="0.1",
        realized="100",
    )


def test_a_partial_fill_the_stream_booked_before_reconciliation_is_not_booked_again(sim, live):
    """The reverse order: the stream books the partial execution first; reconciliation then
    finds the leg's executed quantity booked and books nothing."""
    from execution.services.reconciliation import reconcile_account

    account, remote = live
    tp, _sl = legs(open_protected(account))
    tp_order = sim_order(remote, tp.client_order_id)
    partially_fill(remote, tp_order, "0.005", "0.005")
    applier = AccountEventApplier(account.pk, grace_seconds=3600, reconcile=lambda pk: None)

    applier.apply_frames([tp_frame(tp_order, status="PARTIALLY_FILLED", last="0.005", cumulative="0.005", trade_id=1)])
    run = reconcile_account(account, sleep=no_sleep)

    assert run.status == "in_sync"
    assert Position.objects.get().quantity == Decimal("0.015")
    closes = Trade.objects.filter(reason="take_profit")
    assert [(t.client_order_id, t.quantity) for t in closes] == [(f"{tp.client_order_id}-f", Decimal("0.005"))]


def test_fills_booked_partly_by_the_stream_and_partly_by_reconciliation_are_each_booked_once(sim, live):
    """The stream books the first execution, reconciliation the second (its event late), the
    stream then the late second one (seen, not booked) and the last: 0.02 closed in all."""
    from execution.services.reconciliation import reconcile_account

    account, remote = live
    tp, _sl = legs(open_protected(account))
    tp_order = sim_order(remote, tp.client_order_id)
    applier = AccountEventApplier(account.pk, grace_seconds=3600, reconcile=lambda pk: None)
    partially_fill(remote, tp_order, "0.005", "0.005")
    applier.apply_frames([tp_frame(tp_order, status="PARTIALLY_FILLED", last="0.005", cumulative="0.005", trade_id=1)])
    partially_fill(remote, tp_order, "0.005", "0.01")
    reconcile_account(account, sleep=no_sleep)
    assert Position.objects.get().quantity == Decimal("0.01")

    applier.apply_frames([tp_frame(tp_order, status="PARTIALLY_FILLED", last="0.005", cumulative="0.01", trade_id=2)])
    assert Position.objects.get().quantity == Decimal("0.01")
    applier.apply_frames([tp_frame(tp_order, status="FILLED", last="0.01", cumulative="0.02", trade_id=3)])

    closes = Trade.objects.filter(reason="take_profit").order_by("pk")
    assert [t.quantity for t in closes] == [Decimal("0.005"), Decimal("0.005"), Decimal("0.01")]
    assert Position.objects.get().status == "closed"
    assert PendingOrder.objects.get(pk=tp.pk).status == "filled"


def test_a_resync_that_could_not_run_fails_the_connect(sim, live):
    """The stream reconciles on every connect before applying that socket's events, so that
    nothing missed while it was down is lost. When another run held the account for the whole
    wait (a beat run whose read predates the gap, or a dead worker's 5-minute lease), the
    skipped run was taken for a resync and the stream went on with the gap unchecked."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Account
    from execution.exceptions import ExecutionError
    from execution.services.user_stream import resync_account

    account, _remote = live
    Account.objects.filter(pk=account.pk).update(reconcile_lease_until=timezone.now() + timedelta(minutes=5))

    with pytest.raises(ExecutionError):
        resync_account(account.pk, sleep=no_sleep)


class UnreadableExchange:
    """An adapter whose reads fail (the network blip that also dropped the socket)."""

    requests_sent = 0

    def fetch_positions(self):
        from execution.exceptions import ExecutionError

        raise ExecutionError("timeout reading positions", code="TRANSPORT")


def test_a_resync_that_could_not_read_the_exchange_fails_the_connect(sim, live):
    """A run whose read of the exchange failed compared nothing: the gap is unchecked, yet it
    was taken for a resync (and, counted as a recent run, it also put off the beat's)."""
    from execution.exceptions import ExecutionError
    from execution.services.user_stream import resync_account

    account, _remote = live

    with pytest.raises(ExecutionError):
        resync_account(account.pk, adapter=UnreadableExchange(), sleep=no_sleep)


@pytest.mark.django_db
def test_a_streamed_account_whose_last_run_failed_is_reconciled_on_the_next_beat(settings):
    """A run that failed (a leg left resting it could not cancel, a position it could not
    protect, or an exchange it could not read) counted as a recent reconciliation: with a
    healthy stream, the account was not reconciled again for RECONCILE_STREAMED_SECONDS
    (10 minutes) instead of the next beat's retry."""
    from datetime import timedelta

    from django.utils import timezone

    from execution.models import ReconciliationRun, StreamKind, StreamLease, StreamStatus
    from execution.services.reconciliation import accounts_due_for_reconciliation

    settings.RECONCILE_SECONDS, settings.RECONCILE_STREAMED_SECONDS = 60, 600
    account = LiveV1AccountFactory()
    now = timezone.now()
    StreamLease.objects.create(account=account, holder="h:1", acquired_at=now, expires_at=now + timedelta(seconds=30))
    StreamStatus.objects.create(
        name=f"user:{account.pk}@h:1",
        kind=StreamKind.USER,
        account=account,
        holder="h:1",
        connected=True,
        updated_at=now,
    )
    run = ReconciliationRun.objects.create(account=account, status="failed")
    ReconciliationRun.objects.filter(pk=run.pk).update(started_at=now - timedelta(seconds=60))

    assert account.pk in accounts_due_for_reconciliation()
