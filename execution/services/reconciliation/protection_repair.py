"""The protective-order invariant: an open position that asked for protection (or was adopted)
has its take-profit / stop-loss resting on the exchange; missing legs are placed again."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import batched_events, record_event
from execution.aster.numbers import round_to_tick
from execution.exceptions import ExecutionError, ProtectionFailed
from execution.models import (
    ARMED_PROTECTIVE,
    PendingOrder,
    PendingOrderKind,
    Position,
    PositionStatus,
)
from execution.services.ledger import lock_account
from execution.services.market_data import symbol_rules
from execution.services.protection import ProtectionSpec, add_missing_legs, settle_refused_legs
from execution.services.reconciliation.context import Difference, RunContext, Snapshot, position_view

SMALLEST_TICK = Decimal("0.00000001")
WOULD_TRIGGER_NOW = -2021  # "Order would immediately trigger."


def enforce_protection(ctx: RunContext, snapshot: Snapshot) -> None:
    resting = ctx.resting(snapshot)
    positions = Position.objects.filter(account=ctx.account, status=PositionStatus.OPEN).filter(
        Q(needs_protection=True) | Q(take_profit__isnull=False) | Q(stop_loss__isnull=False)
    )
    legs_by_position: dict[int, list[PendingOrder]] = {}
    for leg in PendingOrder.objects.filter(account=ctx.account, status__in=ARMED_PROTECTIVE):
        legs_by_position.setdefault(leg.position_id or 0, []).append(leg)
    for position in positions:
        if position.symbol not in snapshot.positions:
            continue  # flat on the exchange: closed by the position repairs (or, in a dry run, would be)
        live_legs = [leg for leg in legs_by_position.get(position.pk, []) if leg.client_order_id in resting]
        missing = wanted_kinds(position) - {leg.kind for leg in live_legs}
        if not missing and not position.needs_protection:
            continue
        ctx.repair(
            Difference(
                "position_unprotected",
                position.symbol,
                local=position_view(position),
                remote={"resting_legs": [leg.client_order_id for leg in live_legs], "missing": sorted(missing)},
            ),
            "place its take-profit / stop-loss again",
            partial(_protect, ctx, position, live_legs, snapshot),
        )


def _protect(ctx: RunContext, position: Position, live_legs: list[PendingOrder], snapshot: Snapshot) -> str:
    """Place only the legs it lacks; the legs resting at the venue stay (a working stop is never
    cancelled to be placed again)."""
    mark = snapshot.positions[position.symbol].mark_price or position.mark_price or position.entry_price
    read_version = position.updated_at
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        position = Position.objects.select_for_update().get(pk=position.pk)
        if position.updated_at != read_version or position.status != PositionStatus.OPEN:
            return "changed since this step read it (an order meanwhile): left to the next run"
        # What to place is decided on the locked rows: an order may have changed them since.
        live_ids = {leg.pk for leg in live_legs}
        live_legs = list(PendingOrder.objects.filter(pk__in=live_ids, status__in=ARMED_PROTECTIVE))
        spec = protection_for(position, mark)
        missing = wanted_kinds(position) - {leg.kind for leg in live_legs}
        legs = add_missing_legs(
            account=account,
            position=position,
            spec=spec,
            kinds=missing,
            keep=live_legs,
            base_client_id=f"p{position.pk}-r{ctx.run.pk}",
            now=timezone.now(),
        )
    try:
        ctx.place(legs)
    except ProtectionFailed as failure:
        return _after_refusal(ctx, position, legs, failure)
    return ", ".join(f"{leg.kind} at {leg.trigger_price}" for leg in legs) or "its resting legs cover it"


def _after_refusal(ctx: RunContext, position: Position, legs: list[PendingOrder], failure: ProtectionFailed) -> str:
    """Some new legs were refused. Each refused leg gets its true state (an ambiguous one that
    rests is adopted). A take-profit the venue would fill at once (the price is past it) is
    dropped, never the stop; a stop still missing flags the position; any other refusal is a
    failed repair (fail-closed)."""
    missing = settle_refused_legs(adapter=ctx.adapter, account=ctx.account, legs=legs, failure=failure)
    refused: dict[str, int | None] = failure.details.get("refused", {})
    take_profits = {leg.client_order_id for leg in legs if leg.kind == PendingOrderKind.TAKE_PROFIT}
    would_trigger = {cid for cid, code in refused.items() if cid in take_profits and code == WOULD_TRIGGER_NOW}
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        changes: dict[str, object] = {}
        if PendingOrderKind.STOP_LOSS in missing:
            changes["needs_protection"] = True  # flagged: the next run tries again
        if would_trigger and PendingOrderKind.TAKE_PROFIT in missing:
            missing.discard(PendingOrderKind.TAKE_PROFIT)
            changes["take_profit"] = None
            record_event(
                account=account,
                kind="position.take_profit_dropped",
                subject=position,
                message="the price is already past the take-profit: the venue would fill it at once; the stop stays",
            )
        if changes:
            Position.objects.filter(pk=position.pk).update(**changes, updated_at=timezone.now())
    if not missing:
        return "take-profit dropped (the price is past it); the stop rests" if would_trigger else "legs adopted"
    raise ExecutionError(failure.message, code="PROTECTION_FAILED")


def wanted_kinds(position: Position) -> set[str]:
    wanted = set()
    if position.take_profit is not None:
        wanted.add(PendingOrderKind.TAKE_PROFIT.value)
    if position.stop_loss is not None or position.needs_protection:
        wanted.add(PendingOrderKind.STOP_LOSS.value)
    return wanted


def protection_for(position: Position, mark: Decimal) -> ProtectionSpec:
    """What the position asked for; an adopted one gets a stop EXECUTION_ADOPTED_STOP_PCT from the mark."""
    sign = 1 if position.side == "LONG" else -1
    stop, take = position.stop_loss, position.take_profit
    if stop is None and take is None:
        stop = mark * (1 - sign * settings.EXECUTION_ADOPTED_STOP_PCT)
        lp = position.liquidation_price
        if lp is not None and (stop - lp) * sign <= 0:
            # A stop at or past liquidation never fires (the position is liquidated first):
            # at high leverage the adopted stop moves halfway between the mark and liquidation.
            stop = lp + (mark - lp) / 2
    tick = symbol_rules(position.symbol).tick_size or SMALLEST_TICK
    return ProtectionSpec(take_profit=take, stop_loss=round_to_tick(stop, tick) if stop is not None else None)
