"""ORDER_TRADE_UPDATE: an order of ours CANCELED or EXPIRED on the exchange.

A leg that is already final here was cancelled on purpose (a close, a flip, new protection,
a repair: `cancel_leg` made it final and marked it `venue_cancel_pending` before it was
cancelled there): the event only confirms it. A leg still armed here was cancelled by someone
else, or expired: its status is updated and the position gets the leg again through the
protection services (recorded in one transaction, placed after the commit).

An EXPIRED conditional order may be the first event of a trigger (ASTER_WS.md §2.3: a fill
can follow under the same client id), so a leg is only given up after the exchange, asked by
client id outside any transaction, says it is closed without an execution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.audit import batched_events, record_event, transition
from accounts.models import Account
from execution.aster.streams.user_events import OrderTradeUpdate
from execution.exceptions import ExecutionError, ProtectionFailed
from execution.models import (
    ARMED_PROTECTIVE,
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    PositionStatus,
    Trade,
)
from execution.services.adapters.base import ExecutionAdapter
from execution.services.ledger import lock_account
from execution.services.protection import ProtectionSpec, add_missing_legs, place_on_exchange, settle_refused_legs
from execution.services.user_stream.order_fills import execution_view, record_foreign
from execution.services.user_stream.outcome import Applied, UserEventRejected

logger = logging.getLogger(__name__)


@dataclass
class ClosedLeg:
    applied: Applied
    new_legs: list[PendingOrder] = field(default_factory=list)
    position: Position | None = None


def apply_order_closed(*, account_id: int, event: OrderTradeUpdate, adapter: ExecutionAdapter) -> Applied:
    leg = PendingOrder.objects.filter(account_id=account_id, client_order_id=event.client_order_id).first()
    if leg is None:
        return _not_a_leg(account_id, event)
    if leg.symbol != event.symbol:
        raise UserEventRejected(f"{event.client_order_id}: the event names {event.symbol}, our leg is {leg.symbol}")
    if leg.status in ARMED_PROTECTIVE:
        state = _state_at_exchange(adapter, leg)
        if state == "working":  # an expiry that is the first step of a trigger: its fill follows
            return Applied("left", detail=f"{leg.client_order_id} {event.status}: the exchange still works it")
        if state == "executed":  # it executed after all: reconciliation books what it did
            return Applied("left", reconcile=True, detail=f"{leg.client_order_id} {event.status} after executing")
    closed = _record_closed_leg(account_id, leg.pk, event)
    if closed.new_legs:
        return _place(adapter, closed)
    return closed.applied


def _not_a_leg(account_id: int, event: OrderTradeUpdate) -> Applied:
    with transaction.atomic(), batched_events():
        account = lock_account(account_id)
        if Trade.objects.filter(account=account, client_order_id=event.client_order_id).exists():
            return Applied("ignored", detail="an order-path intent: the order path settles it")
        record_foreign(account, event)
    return Applied("recorded_foreign")


def _state_at_exchange(adapter: ExecutionAdapter, leg: PendingOrder) -> str:
    """Ask the exchange (no transaction held) how the leg ended: `closed` (without an
    execution), `working` (still open) or `executed`."""
    try:
        order = adapter.lookup_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
    except ExecutionError as exc:
        logger.warning("could not query %s after its cancel event: %s", leg.client_order_id, exc)
        return "closed"  # the event said so; reconciliation corrects it if the exchange disagrees
    if order is None:
        return "closed"
    if order.is_open:
        return "working"
    return "executed" if order.executed_quantity > 0 else "closed"


def _record_closed_leg(account_id: int, leg_id: int, event: OrderTradeUpdate) -> ClosedLeg:
    now = timezone.now()
    with transaction.atomic(), batched_events():
        account = lock_account(account_id)
        leg = PendingOrder.objects.select_for_update().get(pk=leg_id)
        if leg.status not in ARMED_PROTECTIVE:
            # Ours, on purpose: the cancel at the venue is now confirmed.
            PendingOrder.objects.filter(pk=leg.pk, venue_cancel_pending=True).update(venue_cancel_pending=False)
            record_event(
                account=account,
                kind="pendingorder.venue_cancel_confirmed",
                subject=leg,
                message=f"{event.status} on the exchange; {leg.status} here",
            )
            return ClosedLeg(Applied("recorded", detail=f"deliberate: {leg.status} here"))
        leg.closed_at = now
        transition(
            leg,
            to_status=PendingOrderStatus.CANCELLED,
            account=account,
            message=f"{event.status} on the exchange (not by this service)",
            update_fields=["closed_at"],
            data=execution_view(event),
        )
        position = (
            Position.objects.select_for_update().filter(pk=leg.position_id, status=PositionStatus.OPEN).first()
            if leg.position_id
            else None
        )
        if position is None:
            return ClosedLeg(Applied("recorded", detail="cancelled; no open position to protect"))
        new_legs = _replacement(account, position, leg, now)
    return ClosedLeg(Applied("repaired", detail=f"{leg.kind} re-placed"), new_legs, position)


def _replacement(account: Account, position: Position, leg: PendingOrder, now: datetime) -> list[PendingOrder]:
    """The same kind of leg again, next to the position's legs that still rest (kept as they are)."""
    take_profit, stop_loss = position.take_profit, position.stop_loss
    if leg.kind == PendingOrderKind.TAKE_PROFIT and take_profit is None:
        take_profit = leg.trigger_price
    if leg.kind == PendingOrderKind.STOP_LOSS and stop_loss is None:
        stop_loss = leg.trigger_price
    resting = list(
        PendingOrder.objects.filter(position=position, status__in=ARMED_PROTECTIVE).exclude(exchange_order_id="")
    )
    return add_missing_legs(
        account=account,
        position=position,
        spec=ProtectionSpec(take_profit, stop_loss, leg.working_type),
        kinds={leg.kind},
        keep=resting,
        base_client_id=f"p{position.pk}-u{leg.pk}",
        now=now,
    )


def _place(adapter: ExecutionAdapter, closed: ClosedLeg) -> Applied:
    """After the commit: place the new leg. A refusal leaves the position flagged
    (`needs_protection`) and asks for a reconciliation now."""
    assert closed.position is not None
    account = adapter.account
    try:
        place_on_exchange(adapter=adapter, account=account, orders=closed.new_legs)
    except ProtectionFailed as failure:
        missing = settle_refused_legs(adapter=adapter, account=account, legs=closed.new_legs, failure=failure)
        with transaction.atomic(), batched_events():
            locked = lock_account(account.pk)
            if missing:
                Position.objects.filter(pk=closed.position.pk).update(needs_protection=True, updated_at=timezone.now())
            record_event(
                account=locked,
                kind="position.protection_failed",
                subject=closed.position,
                message=failure.message,
                data={"action": "re-placing a leg cancelled on the exchange", "missing": sorted(missing)},
            )
        return Applied("repair_failed", reconcile=True, detail=failure.message)
    except ExecutionError as exc:
        logger.error("could not re-place a leg for position %s: %s", closed.position.pk, exc)
        return Applied("repair_failed", reconcile=True, detail=str(exc))
    return closed.applied
