"""Repairs of orders: in-flight intents of unknown outcome, protective legs that are no longer
open on the exchange, and protective orders resting for a symbol without a position."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import batched_events, record_event, transition
from accounts.models import Account
from execution.exceptions import ExecutionError
from execution.models import (
    ARMED_PROTECTIVE,
    TRADE_IN_FLIGHT,
    PendingOrder,
    PendingOrderStatus,
    Position,
    PositionStatus,
    Trade,
    TradeStatus,
)
from execution.services.adapters.base import Fill, RemoteOrder
from execution.services.ledger import (
    BookedFill,
    book_fill,
    booked_leg_fills,
    cancel_sibling,
    leg_fill_client_id,
    lock_account,
    mark_leg_filled,
    open_position,
    protective_fill_reason,
    reduce_only_trade,
)
from execution.services.protection import ProtectionSpec, book_and_protect
from execution.services.reconciliation.context import Difference, RunContext, Snapshot, leg_view, order_view, trade_view
from execution.services.unknown_outcomes import expired_error, resolve_by_client_id

# 1 ------------------------------------------------------------------ unknown intents


def resolve_unknown_intents(ctx: RunContext) -> None:
    """`unknown` intents, and `submitting` ones older than EXECUTION_INTENT_STALE_SECONDS (their
    process died between sending and booking): both are asked for by client id."""
    stale = timezone.now() - timedelta(seconds=settings.EXECUTION_INTENT_STALE_SECONDS)
    in_doubt = Q(status=TradeStatus.UNKNOWN) | Q(status=TradeStatus.SUBMITTING, created_at__lt=stale)
    for trade in Trade.objects.filter(in_doubt, account=ctx.account):
        ctx.repair(
            Difference("unknown_intent", trade.symbol, local=trade_view(trade)),
            f"query {trade.client_order_id} and apply the exchange's answer",
            partial(_apply_unknown, ctx, trade),
        )


def _apply_unknown(ctx: RunContext, trade: Trade) -> str:
    outcome = resolve_by_client_id(ctx.adapter, trade, sleep=ctx.sleep, clock=ctx.clock)
    if isinstance(outcome, Fill):
        return _book_resolved_fill(ctx, trade, outcome)
    if outcome == "not_filled":
        _finish_unfilled(ctx, trade, TradeStatus.CANCELLED, "EXCHANGE_NOT_FILLED", "the exchange reports it not filled")
        return "not filled on the exchange: cancelled"
    if outcome == "expired":
        _finish_unfilled(ctx, trade, TradeStatus.REJECTED, "EXPIRED_UNKNOWN", expired_error(trade).message)
        return "never reached the exchange, and its window has passed: rejected (expired_unknown)"
    raise ExecutionError(f"{trade.client_order_id} is still unknown to the exchange", code="STILL_UNKNOWN")


def _book_resolved_fill(ctx: RunContext, trade: Trade, fill: Fill) -> str:
    """Book the fill on the intent itself (linking it), then give the position the protection the
    intent asked for, as the order path would have."""
    spec = ProtectionSpec(trade.take_profit, trade.stop_loss)
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        trade.refresh_from_db()
        if trade.status not in TRADE_IN_FLIGHT:
            return f"already resolved ({trade.status}) by the order path"
        _booked, legs = book_and_protect(
            account=account, trade=trade, fill=fill, leverage=trade.leverage or 1, spec=spec, now=timezone.now()
        )
    if legs:
        ctx.place(legs)
    ctx.cancel_left_resting()  # a close or new protection made older legs final
    protected = f", protected ({', '.join(f'{leg.kind} {leg.trigger_price}' for leg in legs)})" if legs else ""
    return f"filled {fill.quantity} @ {fill.price}{protected}"


def _finish_unfilled(ctx: RunContext, trade: Trade, status: str, code: str, message: str) -> None:
    with transaction.atomic():
        account = lock_account(ctx.account.pk)
        trade.refresh_from_db()
        if trade.status not in TRADE_IN_FLIGHT:
            return  # the order path resolved it meanwhile
        trade.error_code, trade.error_message = code, message
        transition(
            trade,
            to_status=status,
            account=account,
            message=message,
            update_fields=["error_code", "error_message"],
            data={"code": code},
        )


# 2 ------------------------------------------------------------------ protective legs no longer open


def legs_to_check(ctx: RunContext, snapshot: Snapshot) -> list[PendingOrder]:
    """One read for the two leg steps: the armed legs, and the final ones that may rest there."""
    resting_ids = [o.client_order_id for o in snapshot.orders]
    return list(
        PendingOrder.objects.filter(account=ctx.account).filter(
            Q(status__in=ARMED_PROTECTIVE) | Q(venue_cancel_pending=True) | Q(client_order_id__in=resting_ids)
        )
    )


def check_gone_legs(ctx: RunContext, snapshot: Snapshot, legs: list[PendingOrder]) -> None:
    open_ids = ctx.resting(snapshot)
    resting = {o.client_order_id: o for o in snapshot.orders}
    for leg in legs:
        if leg.status not in ARMED_PROTECTIVE:
            continue
        if not leg.exchange_order_id:
            order = resting.get(leg.client_order_id)
            if order is not None:  # placed, but its id was never recorded (the process lost its database)
                ctx.repair(
                    Difference(
                        "protective_order_unrecorded", leg.symbol, local=leg_view(leg), remote=order_view(order)
                    ),
                    f"record exchange id {order.exchange_order_id} of {leg.client_order_id}",
                    partial(_record_leg_id, ctx, leg, order),
                )
            continue
        if leg.client_order_id in open_ids:
            order = resting.get(leg.client_order_id)
            executed = order.executed_quantity if order is not None else None
            if order is not None and executed and executed > booked_leg_fills(leg)[1]:  # a partial fill not booked
                ctx.repair(
                    Difference(
                        "protective_order_part_filled", leg.symbol, local=leg_view(leg), remote=order_view(order)
                    ),
                    f"book the executed part of {leg.client_order_id} not booked yet",
                    partial(_apply_partial_leg, ctx, leg, order),
                )
            continue
        ctx.repair(
            Difference("protective_order_gone", leg.symbol, local=leg_view(leg), remote={"open": False}),
            f"query {leg.client_order_id} and apply its final state",
            partial(_apply_gone_leg, ctx, leg),
        )


def _record_leg_id(ctx: RunContext, leg: PendingOrder, order: RemoteOrder) -> str:
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        updated = PendingOrder.objects.filter(pk=leg.pk, exchange_order_id="").update(
            exchange_order_id=order.exchange_order_id, updated_at=timezone.now()
        )
        if updated:
            record_event(
                account=account,
                kind="pendingorder.placed",
                subject=leg,
                message="recorded by reconciliation",
                data={"exchange_order_id": order.exchange_order_id},
            )
    return "recorded"


def _apply_gone_leg(ctx: RunContext, leg: PendingOrder) -> str:
    result = ctx.adapter.lookup_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
    if result is not None and result.is_open:
        return f"{result.status}: still resting (placed after the open orders were read)"
    fill = ctx.adapter.fill_of(result) if result is not None else None
    if fill is None:
        status = result.status if result is not None else "NOT_FOUND"
        with transaction.atomic(), batched_events():
            account = lock_account(ctx.account.pk)
            leg.refresh_from_db()
            if leg.status in ARMED_PROTECTIVE:
                leg.closed_at = timezone.now()
                transition(
                    leg,
                    to_status=PendingOrderStatus.CANCELLED,
                    account=account,
                    message=f"exchange status {status}",
                    update_fields=["closed_at"],
                )
        return f"{status}: marked cancelled"
    _book_leg_fill(ctx, leg, fill)
    ctx.cancel_left_resting()  # its sibling (or every other leg, on a whole close) rests there too
    return f"filled {fill.quantity} @ {fill.price}"


def _apply_partial_leg(ctx: RunContext, leg: PendingOrder, order: RemoteOrder) -> str:
    """A leg still resting that executed in part: the executed part the stream has not booked
    (its events not delivered yet) is booked now as the leg's next fill trade, as a filled leg's
    is; the stream then recognises those executions as booked. Left to the next run when the
    position was booked since the exchange was read (the stream may have booked them since)."""
    fill = ctx.adapter.fill_of(order)  # its commission read before the transaction
    if fill is None:
        return "nothing executed"
    now = timezone.now()
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        leg.refresh_from_db()
        if leg.status not in ARMED_PROTECTIVE:
            return f"{leg.status} here since the exchange was read: left to the next run"
        position = open_position(account, leg.symbol)
        if position is None:
            return "no local position to book it against: left to the position checks"
        if ctx.changed_since_read(position):
            return "position booked since the exchange was read: left to the next run"
        booked_count, booked_quantity = booked_leg_fills(leg)
        rest = fill.quantity - booked_quantity
        if rest <= 0:
            return "already booked"
        _, booked = _book_rest_of_leg_fill(
            account=account, position=position, leg=leg, fill=fill, rest=rest, sequence=booked_count + 1, now=now
        )
        record_event(
            account=account,
            kind="pendingorder.partially_filled",
            subject=leg,
            message="booked by reconciliation",
            data={"filled": fill.quantity, "of": leg.quantity, "booked": rest, "price": fill.price},
        )
    if booked.closed_position is not None:
        ctx.cancel_left_resting()  # the position closed: its legs rest there
    return f"booked {rest} of {fill.quantity} executed @ {fill.price}"


def _book_leg_fill(ctx: RunContext, leg: PendingOrder, fill: Fill) -> None:
    """Book the leg's fill (its position reduced or closed) and cancel its sibling."""
    now = timezone.now()
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        leg.refresh_from_db()
        position = open_position(account, leg.symbol)
        trade = None
        # The user-data stream may have booked part of it (partial fills): only the rest is booked.
        booked_count, booked_quantity = booked_leg_fills(leg)
        rest = fill.quantity - booked_quantity
        if position is not None and rest > 0:  # no local position: the leg's fill has nothing to book against
            trade, _ = _book_rest_of_leg_fill(
                account=account, position=position, leg=leg, fill=fill, rest=rest, sequence=booked_count + 1, now=now
            )
        mark_leg_filled(leg, trade=trade, account=account, now=now, price=fill.price, quantity=fill.quantity)
        cancel_sibling(leg, account=account, now=now)


def _book_rest_of_leg_fill(
    *,
    account: Account,
    position: Position,
    leg: PendingOrder,
    fill: Fill,
    rest: Decimal,
    sequence: int,
    now: datetime,
) -> tuple[Trade, BookedFill]:
    """The part `rest` of the leg's exchange fill that nobody booked yet, as the leg's fill trade
    number `sequence` (`<leg>-f`, `-f2`, ...: the names the user-data stream books under too),
    with its share of the commission."""
    trade = reduce_only_trade(
        account=account,
        symbol=leg.symbol,
        side=leg.side,
        quantity=rest,
        leverage=position.leverage,
        client_order_id=leg_fill_client_id(leg, sequence),
        reason=protective_fill_reason(leg.kind),
    )
    booked = book_fill(
        account=account,
        position=position,
        trade=trade,
        quantity=min(rest, position.quantity),
        price=fill.price,
        fee=fill.fee * rest / fill.quantity,
        leverage=position.leverage,
        now=now,
        exchange_order_id=fill.exchange_order_id,
        keep_pending=leg,
    )
    return trade, booked


# 2b ----------------------------------------------------------------- legs final here, resting there


def check_left_resting(ctx: RunContext, snapshot: Snapshot, legs: list[PendingOrder]) -> None:
    """Legs of ours that are final here but rest on the exchange: marked ones whose cancel
    failed, and any other (a stop of a closed position would close the next one)."""
    resting = {o.client_order_id: o for o in snapshot.orders}
    candidates = [
        leg
        for leg in legs
        if leg.status not in ARMED_PROTECTIVE and (leg.venue_cancel_pending or leg.client_order_id in resting)
    ]
    for leg in candidates:
        if leg.client_order_id in ctx.cancelled_remote:
            continue  # an earlier repair of this run cancelled it there
        order = resting.get(leg.client_order_id)
        if order is None:  # gone from the exchange since: nothing left to cancel
            if not ctx.dry_run and not ctx.changed_since_read(leg):
                PendingOrder.objects.filter(pk=leg.pk).update(venue_cancel_pending=False)
            continue
        ctx.repair(
            Difference("protective_order_left_resting", leg.symbol, local=leg_view(leg), remote=order_view(order)),
            f"cancel {leg.client_order_id} on the exchange",
            partial(_cancel_left_resting, ctx, leg),
        )


def _cancel_left_resting(ctx: RunContext, leg: PendingOrder) -> str:
    ctx.cancel_remote(leg.symbol, leg.client_order_id)
    PendingOrder.objects.filter(pk=leg.pk).update(venue_cancel_pending=False)
    return "cancelled"


# 4 ------------------------------------------------------------------ orphans


def cancel_orphans(ctx: RunContext, snapshot: Snapshot) -> None:
    # A leg of ours that protects a local open position is no orphan, even if the position is
    # missing from the snapshot (opened between the two reads): the next run compares it. Nor is
    # an order on a symbol with hedge-mode rows: it may protect them (that run fails closed).
    candidates = [
        order
        for order in snapshot.orders
        if order.symbol not in snapshot.positions
        and order.symbol not in snapshot.hedge_symbols
        and order.is_protective
        and order.client_order_id not in ctx.cancelled_remote
    ]
    if not candidates:
        return
    ours = set(
        PendingOrder.objects.filter(
            account=ctx.account, status__in=ARMED_PROTECTIVE, position__status=PositionStatus.OPEN
        ).values_list("client_order_id", flat=True)
    )
    for order in candidates:
        if order.client_order_id in ours:
            continue  # already cancelled with its position, or protecting a position newer than the read
        ctx.repair(
            Difference("orphan_protective_order", order.symbol, remote=order_view(order)),
            f"cancel {order.client_order_id} on the exchange",
            partial(_cancel_orphan, ctx, order),
        )


def _cancel_orphan(ctx: RunContext, order: RemoteOrder) -> str:
    ctx.cancel_remote(order.symbol, order.client_order_id)
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        for leg in PendingOrder.objects.filter(
            account=account, client_order_id=order.client_order_id, status__in=ARMED_PROTECTIVE
        ):
            leg.closed_at = timezone.now()
            transition(
                leg,
                to_status=PendingOrderStatus.CANCELLED,
                account=account,
                message="orphan: no position on the exchange",
                update_fields=["closed_at"],
            )
    return "cancelled"
