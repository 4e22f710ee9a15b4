"""Protective orders (TP/SL) as PendingOrder pairs, linked as siblings.

Paper: the rows are the orders; the sweep triggers them. Live: the rows record the exchange
orders (client and exchange ids) placed by the live adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import EllipsisType

from django.db import transaction
from django.utils import timezone

from accounts.audit import batched_events, record_event, transition
from accounts.models import Account
from accounts.row_sql import save_new, take_keys
from execution.exceptions import ExecutionError, ProtectionFailed
from execution.models import (
    ACTIVE_PROTECTIVE,
    ARMED_PROTECTIVE,
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    Trade,
    WorkingType,
)
from execution.services.adapters.base import ExecutionAdapter, Fill, ProtectiveOrderRequest
from execution.services.alerts import alert_protection_failed
from execution.services.ledger import (
    BookedFill,
    book_fill,
    cancel_active_pending,
    cancel_leg,
    lock_account,
    open_position,
)
from execution.services.position_math import closing_side

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProtectionSpec:
    take_profit: Decimal | None
    stop_loss: Decimal | None
    working_type: str = WorkingType.MARK_PRICE

    @property
    def wanted(self) -> bool:
        return self.take_profit is not None or self.stop_loss is not None


def protective_client_ids(base: str) -> dict[str, str]:
    """Client ids of a pair derived from the base id (<= 32 chars), within the 36-char limit."""
    return {PendingOrderKind.TAKE_PROFIT: f"{base}-tp", PendingOrderKind.STOP_LOSS: f"{base}-sl"}


def replace_protection(
    *,
    account: Account,
    position: Position,
    spec: ProtectionSpec,
    base_client_id: str,
    now: datetime,
    position_is_new: bool = False,
) -> list[PendingOrder]:
    """Cancel the position's active TP/SL (a new position has none) and create the requested pair."""
    if not position_is_new:
        cancel_active_pending(position, account=account, reason="replaced by new protection")
    orders = create_legs(account=account, position=position, spec=spec, base_client_id=base_client_id)
    record_protection(account=account, position=position, spec=spec)
    audit_new_legs(account=account, legs=orders)
    return orders


def create_legs(
    *, account: Account, position: Position, spec: ProtectionSpec, base_client_id: str
) -> list[PendingOrder]:
    """The requested TP/SL rows, linked as siblings (not audited yet: `audit_new_legs`)."""
    ids = protective_client_ids(base_client_id)
    side = closing_side(position.side)
    # The stop first: if the venue refuses one leg, the one that limits the loss is already there.
    wanted = [(PendingOrderKind.STOP_LOSS, spec.stop_loss), (PendingOrderKind.TAKE_PROFIT, spec.take_profit)]
    legs = [
        PendingOrder(
            account=account,
            position=position,
            symbol=position.symbol,
            kind=kind,
            side=side,
            trigger_price=price,
            working_type=spec.working_type,
            client_order_id=ids[kind],
        )
        for kind, price in wanted
        if price is not None
    ]
    if take_keys(legs):  # keys taken ahead (the order path's apply): linked before they are written
        if len(legs) == 2:
            legs[0].sibling, legs[1].sibling = legs[1], legs[0]
        for leg in legs:
            save_new(leg)
        return legs
    orders = PendingOrder.objects.bulk_create(legs)
    if len(orders) == 2:
        orders[0].sibling, orders[1].sibling = orders[1], orders[0]
        PendingOrder.objects.bulk_update(orders, ["sibling"])
    return orders


def record_protection(*, account: Account, position: Position, spec: ProtectionSpec) -> None:
    """The position remembers what it asked for (it is protected, not flagged)."""
    wanted = (spec.take_profit, spec.stop_loss, False)
    if (position.take_profit, position.stop_loss, position.needs_protection) != wanted:
        position.take_profit, position.stop_loss, position.needs_protection = wanted
        position.save(update_fields=["take_profit", "stop_loss", "needs_protection", "updated_at"])


def audit_new_legs(*, account: Account, legs: list[PendingOrder], amend: bool = False) -> None:
    """One `pendingorder.pending` event per new leg (`amend`: made by a protection amend)."""
    for leg in legs:
        data: dict[str, object] = {"kind": leg.kind, "trigger_price": leg.trigger_price, "side": leg.side}
        if amend:
            data["amend"] = True
        record_event(account=account, kind="pendingorder.pending", subject=leg, to_status="pending", data=data)


def add_missing_legs(
    *,
    account: Account,
    position: Position,
    spec: ProtectionSpec,
    kinds: set[str],
    keep: list[PendingOrder],
    base_client_id: str,
    now: datetime,
) -> list[PendingOrder]:
    """Give `position` new legs of `kinds` next to `keep` (its legs resting at the venue, left as
    they are: never cancel a working stop to re-place it). Other active legs of those kinds,
    which do not rest at the venue, are cancelled here. The new TP and SL are siblings of each
    other or of the kept leg of the other kind. Returns the new legs, the stop first."""
    kept = {leg.kind: leg for leg in keep}
    stale = (
        PendingOrder.objects.select_for_update()
        .filter(position=position, status__in=ACTIVE_PROTECTIVE, kind__in=kinds)
        .exclude(pk__in=[leg.pk for leg in keep])
    )
    for leg in stale:
        leg.closed_at = now
        cancel_leg(leg, account=account, reason="not resting at the venue: replaced")
    ids = protective_client_ids(base_client_id)
    prices = {PendingOrderKind.STOP_LOSS: spec.stop_loss, PendingOrderKind.TAKE_PROFIT: spec.take_profit}
    new = PendingOrder.objects.bulk_create(
        PendingOrder(
            account=account,
            position=position,
            symbol=position.symbol,
            kind=kind,
            side=closing_side(position.side),
            trigger_price=prices[kind],
            working_type=spec.working_type,
            client_order_id=ids[kind],
        )
        for kind in (PendingOrderKind.STOP_LOSS, PendingOrderKind.TAKE_PROFIT)
        if kind in kinds and kind not in kept and prices[kind] is not None
    )
    legs = {**kept, **{leg.kind: leg for leg in new}}
    stop, take = legs.get(PendingOrderKind.STOP_LOSS), legs.get(PendingOrderKind.TAKE_PROFIT)
    if new and stop is not None and take is not None:
        # One-to-one: a final leg that still names one of them as its sibling lets go first.
        PendingOrder.objects.filter(sibling__in=[stop, take]).exclude(pk__in=[stop.pk, take.pk]).update(sibling=None)
        stop.sibling, take.sibling = take, stop
        PendingOrder.objects.bulk_update([stop, take], ["sibling"])
    record_protection(account=account, position=position, spec=spec)
    audit_new_legs(account=account, legs=new)
    return new


def book_and_protect(
    *,
    account: Account,
    trade: Trade,
    fill: Fill,
    leverage: int,
    spec: ProtectionSpec,
    now: datetime,
    position: Position | None | EllipsisType = ...,
) -> tuple[BookedFill, list[PendingOrder]]:
    """Book an intent's fill on the account's position (account locked by the caller) and record
    the TP/SL legs it asked for: the order path's apply step, and reconciliation's resolution of
    an intent in doubt, do the same. `position`: the open position in the symbol if the caller
    has read (and locked) it already, else it is read here."""
    booked = book_fill(
        account=account,
        position=open_position(account, trade.symbol) if isinstance(position, EllipsisType) else position,
        trade=trade,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        leverage=leverage,
        now=now,
        exchange_order_id=fill.exchange_order_id,
        protection=(spec.take_profit, spec.stop_loss) if spec.wanted else None,
    )
    legs: list[PendingOrder] = []
    if spec.wanted and booked.position is not None:
        legs = replace_protection(
            account=account,
            position=booked.position,
            spec=spec,
            base_client_id=trade.client_order_id,
            now=now,
            position_is_new=booked.opened_new,
        )
    return booked, legs


def place_on_exchange(*, adapter: ExecutionAdapter, account: Account, orders: list[PendingOrder]) -> None:
    """Send recorded legs to the venue (no transaction held), then record their exchange ids.

    Raises ProtectionFailed when a leg is refused; legs placed before it stay placed (the
    caller decides what to cancel). A venue-less adapter (paper) acknowledges without an
    exchange id, and there is nothing to record.
    """
    requests = [
        ProtectiveOrderRequest(
            symbol=order.symbol,
            kind=order.kind,
            side=order.side,
            trigger_price=order.trigger_price,
            working_type=order.working_type,
            client_order_id=order.client_order_id,
            quantity=order.quantity,
        )
        for order in orders
    ]
    try:
        acks = adapter.place_protective_orders(requests)
    except ProtectionFailed as failure:  # the legs the venue did accept are recorded all the same
        _record_placed(adapter, account, orders, failure.details.get("acks", {}))
        raise
    _record_placed(adapter, account, orders, {a.client_order_id: a.exchange_order_id for a in acks})


def _record_placed(
    adapter: ExecutionAdapter, account: Account, orders: list[PendingOrder], placed: dict[str, str]
) -> None:
    """Record the exchange ids of the legs the venue accepted (`placed`: client id -> exchange id)."""
    placed = {client_id: exchange_id for client_id, exchange_id in placed.items() if exchange_id}
    orders = [order for order in orders if order.client_order_id in placed]
    if not orders:
        return
    made_final_meanwhile = False
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        current = {
            row.pk: row for row in PendingOrder.objects.select_for_update().filter(pk__in=[o.pk for o in orders])
        }
        for order in orders:
            row = current[order.pk]
            row.exchange_order_id = order.exchange_order_id = placed[order.client_order_id]
            fields = ["exchange_order_id", "updated_at"]
            if row.status not in ARMED_PROTECTIVE:
                # Another writer replaced or closed it while it was being placed: it rests on the
                # venue for nothing, so it is cancelled there too (after this commit).
                row.venue_cancel_pending = made_final_meanwhile = True
                fields.append("venue_cancel_pending")
            row.save(update_fields=fields)
            record_event(
                account=locked,
                kind="pendingorder.placed",
                subject=row,
                data={"exchange_order_id": row.exchange_order_id},
            )
    if made_final_meanwhile:
        cancel_legs_left_resting(adapter=adapter, account=account)


def settle_refused_legs(
    *, adapter: ExecutionAdapter, account: Account, legs: list[PendingOrder], failure: ProtectionFailed
) -> set[str]:
    """After a placement in which some legs were refused, give each refused leg its true state.
    One whose outcome is unknown is asked for by client id: if it rests at the venue it is
    adopted (its exchange id recorded, it stays armed), never placed twice; if the venue cannot
    say, it is cancelled here with its cancel pending there. A plain refusal is `failed`.
    The legs that were placed stay as they are. Returns the kinds still missing."""
    refused = set(failure.details.get("refused", {})) | {failure.details.get("failed")} - {None}
    unknown = set(failure.details.get("unknown_ids", []))
    found: dict[str, str | None] = {}  # client id -> exchange id if it rests; None if the venue cannot say
    for leg in legs:
        if leg.client_order_id in unknown:
            try:
                order = adapter.lookup_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
            except ExecutionError:
                found[leg.client_order_id] = None
                continue
            if order is not None and order.is_open:
                found[leg.client_order_id] = order.exchange_order_id
            else:
                unknown.discard(leg.client_order_id)  # the venue does not hold it: refused after all
    _record_placed(adapter, account, legs, {cid: eid for cid, eid in found.items() if eid})
    missing = set()
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        for leg in legs:
            if leg.client_order_id not in refused or found.get(leg.client_order_id):
                continue
            leg.refresh_from_db()
            if leg.status not in ARMED_PROTECTIVE:
                continue
            missing.add(leg.kind)
            _give_up_leg(leg, account=locked, message=failure.message, may_rest=leg.client_order_id in unknown)
    return missing


def _give_up_leg(leg: PendingOrder, *, account: Account, message: str, may_rest: bool) -> None:
    """A leg that could not be placed. Never `failed` while the venue may hold it: then it is
    cancelled here and marked so that reconciliation cancels it there (or finds it gone)
    instead of placing a duplicate."""
    leg.error_message = message
    if may_rest:
        leg.venue_cancel_pending, leg.closed_at = True, timezone.now()
        fields = ["error_message", "venue_cancel_pending", "closed_at"]
        transition(leg, to_status=PendingOrderStatus.CANCELLED, account=account, message=message, update_fields=fields)
        return
    transition(
        leg, to_status=PendingOrderStatus.FAILED, account=account, message=message, update_fields=["error_message"]
    )


def handle_protection_failure(
    *,
    adapter: ExecutionAdapter,
    account: Account,
    legs: list[PendingOrder],
    position: Position | None,
    symbol: str,
    failure: ProtectionFailed,
    close: Callable[[str], str],
) -> None:
    """A leg was refused. An account that keeps unprotected positions keeps the legs that were
    placed (a stop that rests is never taken away), and its position is flagged for
    reconciliation to place what is missing. Otherwise every leg is cancelled and the position
    closed at market (`close`, which returns the closing order's client id). Either way it is
    audited; the caller re-raises."""
    keep = account.keep_unprotected_positions
    if keep:
        missing = settle_refused_legs(adapter=adapter, account=account, legs=legs, failure=failure)
        with transaction.atomic(), batched_events():
            locked = lock_account(account.pk)
            if position is not None and missing:
                Position.objects.filter(pk=position.pk).update(needs_protection=True, updated_at=timezone.now())
            record_event(
                account=locked,
                kind="position.protection_failed",
                subject=position,
                message=failure.message,
                data={"action": "kept; placed legs kept", "missing": sorted(missing), **failure.details},
            )
        logger.error("protection failed for account %s %s (kept): %s", account.pk, symbol, failure.message)
        alert_protection_failed(
            account=account, position=position, symbol=symbol, message=f"{failure.message} (position kept)"
        )
        return
    # Legs the venue holds, or may hold: those placed, and refused ones whose outcome is unknown.
    may_rest = set(failure.details.get("placed", [])) | set(failure.details.get("unknown_ids", []))
    for order in legs:
        try:
            adapter.cancel_order(symbol=order.symbol, client_order_id=order.client_order_id)
            may_rest.discard(order.client_order_id)
        except ExecutionError as exc:
            logger.error("could not cancel protective leg %s: %s", order.client_order_id, exc)
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        for order in legs:
            order.refresh_from_db(fields=["status"])
            if order.status not in ARMED_PROTECTIVE:
                continue  # another writer made it final meanwhile (a concurrent order's protection)
            _give_up_leg(order, account=locked, message=failure.message, may_rest=order.client_order_id in may_rest)
        if position is not None:
            Position.objects.filter(pk=position.pk).update(needs_protection=True, updated_at=timezone.now())
        record_event(
            account=locked,
            kind="position.protection_failed",
            subject=position,
            message=failure.message,
            data={"action": "closed at market", **failure.details},
        )
    logger.error("protection failed for account %s %s: %s", account.pk, symbol, failure.message)
    alert_protection_failed(
        account=account, position=position, symbol=symbol, message=f"{failure.message} (closing at market)"
    )
    if position is not None:
        try:
            failure.details["closed_by"] = close(position.symbol)
        except ExecutionError as exc:
            failure.details["close_failed"] = str(exc)
            logger.critical("could not close unprotected position %s: %s", position.pk, exc)


def cancel_legs_left_resting(*, adapter: ExecutionAdapter, account: Account) -> list[PendingOrder]:
    """Cancel at the venue the account's legs that are final here but may still rest there
    (`venue_cancel_pending`), after the transaction that made them final has committed. A leg
    whose cancel fails stays marked, with an audit event, and reconciliation retries it.
    Returns the legs that could not be cancelled."""
    failed = []
    for leg in PendingOrder.objects.filter(account=account, venue_cancel_pending=True):
        try:
            adapter.cancel_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
        except ExecutionError as exc:
            logger.error(
                "could not cancel %s at the venue (left resting, will be retried): %s", leg.client_order_id, exc
            )
            record_event(
                account=account,
                kind="pendingorder.venue_cancel_failed",
                subject=leg,
                message=str(exc),
                data={"client_order_id": leg.client_order_id},
            )
            failed.append(leg)
            continue
        PendingOrder.objects.filter(pk=leg.pk, venue_cancel_pending=True).update(venue_cancel_pending=False)
    return failed
