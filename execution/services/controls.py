"""A trader's controls: close (full or partial), close all, amend or remove protection, halt,
resume, reduce-only. Each is audited; each goes through the order path or the ledger's
transitions, never around them.

Protection amends keep a stop resting at all times on a live account: the new legs are placed
first (after the transaction that records them), the old ones are cancelled after (a second
transaction, then the venue). Paper replaces its legs in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.audit import batched_events, record_event, transition
from accounts.display import plain_decimal
from accounts.models import Account, TradingState
from accounts.services import reset_paper_wallet, set_trading_state
from execution.exceptions import (
    ExecutionError,
    NoPosition,
    ProtectionFailed,
    RiskCheckFailed,
    StateConflict,
)
from execution.models import (
    ACTIVE_PROTECTIVE,
    ARMED_PROTECTIVE,
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    PositionStatus,
    TradeReason,
    WorkingType,
)
from execution.services.adapters.base import ExecutionAdapter
from execution.services.adapters.factory import get_execution_adapter
from execution.services.alerts import alert_protection_failed
from execution.services.kill_switch import HaltReport, halt_trading
from execution.services.ledger import cancel_leg, lock_account
from execution.services.market_data import market_snapshot
from execution.services.orders import ExecutionResult, ExecutionService
from execution.services.position_math import closing_side, direction
from execution.services.protection import (
    ProtectionSpec,
    audit_new_legs,
    cancel_legs_left_resting,
    create_legs,
    place_on_exchange,
    record_protection,
    replace_protection,
)
from execution.services.risk import refuse_stop_beyond_liquidation

logger = logging.getLogger(__name__)

KEEP = object()  # "not sent": the leg stays as it is


# --------------------------------------------------------------------------- closes


def close_position(
    *, account: Account, position: Position, quantity: Decimal | None = None, adapter: ExecutionAdapter | None = None
) -> ExecutionResult:
    """Close `position` at market, whole or `quantity` of it (reduce-only). NoPosition when it is
    not open; a quantity above the position's is INVALID_QUANTITY (nothing written)."""
    position.refresh_from_db(fields=["status", "quantity", "leverage"])
    if position.status != PositionStatus.OPEN:
        raise NoPosition(f"position {position.pk} is not open")
    if quantity is not None and quantity <= 0:
        raise RiskCheckFailed("INVALID_QUANTITY", f"quantity must be greater than 0, got {quantity}")
    service = ExecutionService(account, adapter=adapter)
    if quantity is None or quantity == position.quantity:
        result = service.close_position(position.symbol)
    else:
        result = service.execute_market_order(
            symbol=position.symbol,
            side=closing_side(position.side),
            quantity=quantity,
            leverage=position.leverage,
            reason=TradeReason.EXIT,
            reduce_only=True,
        )
    record_event(  # after the fill: a refused close writes nothing but its denial
        account=account,
        kind="position.close_requested",
        subject=position,
        data={"quantity": quantity if quantity is not None else "all", "trade": result.trade.pk},
    )
    return result


@dataclass
class CloseAllReport:
    closed: dict[str, int] = field(default_factory=dict)  # symbol -> closing trade id
    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # symbol -> {code, detail}


def close_all_positions(*, account: Account, adapter: ExecutionAdapter | None = None) -> CloseAllReport:
    """Flatten every open position of the account, one close each; a failed close does not stop
    the others. Audited with what was closed and what failed."""
    report = CloseAllReport()
    symbols = list(
        Position.objects.filter(account=account, status=PositionStatus.OPEN)
        .order_by("symbol")
        .values_list("symbol", flat=True)
    )
    service = ExecutionService(account, adapter=adapter)
    for symbol in symbols:
        try:
            report.closed[symbol] = service.close_position(symbol).trade.pk
        except NoPosition:
            continue  # closed meanwhile (a trigger, another request)
        except ExecutionError as exc:
            report.errors[symbol] = {"code": exc.code, "detail": exc.message}
    record_event(
        account=account,
        kind="account.close_all",
        data={"closed": report.closed, "errors": report.errors},
    )
    return report


# --------------------------------------------------------------------------- protection


def amend_protection(
    *,
    account: Account,
    position: Position,
    take_profit: Decimal | None | object = KEEP,
    stop_loss: Decimal | None | object = KEEP,
    working_type: str | None = None,
    adapter: ExecutionAdapter | None = None,
) -> list[PendingOrder]:
    """Set the position's TP/SL to what is asked (`None` removes a leg, KEEP leaves it as it is)
    and return its new legs. Checked as at entry: the stop on the losing side of the mark, the
    take-profit on the winning side, and the stop before the liquidation price."""
    position.refresh_from_db()
    if position.status != PositionStatus.OPEN:
        raise NoPosition(f"position {position.pk} is not open")
    current = {leg.kind: leg for leg in PendingOrder.objects.filter(position=position, status__in=ARMED_PROTECTIVE)}
    tp = _wanted(take_profit, current.get(PendingOrderKind.TAKE_PROFIT))
    sl = _wanted(stop_loss, current.get(PendingOrderKind.STOP_LOSS))
    if working_type is None:
        existing = current.get(PendingOrderKind.STOP_LOSS) or current.get(PendingOrderKind.TAKE_PROFIT)
        working_type = existing.working_type if existing is not None else WorkingType.MARK_PRICE
    snapshot = market_snapshot(position.symbol)  # network: before any transaction
    rules = snapshot.rules
    tp = rules.round_price(tp) if tp is not None else None
    sl = rules.round_price(sl) if sl is not None else None
    _check_amend(position=position, take_profit=tp, stop_loss=sl, mark=snapshot.mark_price)
    spec = ProtectionSpec(tp, sl, working_type)
    base = f"a{account.pk}-{uuid.uuid4().hex[:20]}"
    if account.is_paper_trading:
        return _amend_paper(account=account, position=position, spec=spec, base=base)
    return _amend_live(account=account, position=position, spec=spec, base=base, adapter=adapter)


def _wanted(asked: Decimal | None | object, leg: PendingOrder | None) -> Decimal | None:
    if asked is KEEP:
        return leg.trigger_price if leg is not None else None
    assert asked is None or isinstance(asked, Decimal)
    return asked


def _check_amend(*, position: Position, take_profit: Decimal | None, stop_loss: Decimal | None, mark: Decimal) -> None:
    sign = direction(position.side)
    for name, price in (("take_profit", take_profit), ("stop_loss", stop_loss)):
        if price is not None and price <= 0:
            raise RiskCheckFailed("INVALID_PROTECTION", f"{name} must be greater than 0, got {price}")
    if stop_loss is not None and (stop_loss - mark) * sign >= 0:
        where = "below" if sign > 0 else "above"
        raise RiskCheckFailed(
            "INVALID_PROTECTION",
            f"stop_loss {plain_decimal(stop_loss)} must be {where} the mark price {plain_decimal(mark)}"
            f" for a {position.side}",
        )
    if take_profit is not None and (take_profit - mark) * sign <= 0:
        where = "above" if sign > 0 else "below"
        raise RiskCheckFailed(
            "INVALID_PROTECTION",
            f"take_profit {plain_decimal(take_profit)} must be {where} the mark price {plain_decimal(mark)}"
            f" for a {position.side}",
        )
    if stop_loss is not None:
        refuse_stop_beyond_liquidation(
            side=position.side, stop_loss=stop_loss, liquidation_price=position.liquidation_price
        )


def _lock_open(account: Account, position: Position) -> tuple[Account, Position]:
    locked = lock_account(account.pk)
    row = Position.objects.select_for_update().get(pk=position.pk)
    if row.status != PositionStatus.OPEN:
        raise NoPosition(f"position {position.pk} closed meanwhile")
    return locked, row


def _amend_paper(*, account: Account, position: Position, spec: ProtectionSpec, base: str) -> list[PendingOrder]:
    """Paper: the rows are the orders; old and new swap in one transaction."""
    with transaction.atomic(), batched_events():
        locked, row = _lock_open(account, position)
        legs = replace_protection(account=locked, position=row, spec=spec, base_client_id=base, now=timezone.now())
        record_event(account=locked, kind="position.protection_amended", subject=row, data=_spec_data(spec))
    return legs


def _amend_live(
    *, account: Account, position: Position, spec: ProtectionSpec, base: str, adapter: ExecutionAdapter | None
) -> list[PendingOrder]:
    """Live: record the new legs, place them, then cancel the old ones (here, then at the venue),
    so the position never lacks a stop. If a new leg is refused, the new legs are taken back and
    the old ones stay: ProtectionFailed."""
    adapter = adapter or get_execution_adapter(account)
    with transaction.atomic(), batched_events():
        locked, row = _lock_open(account, position)
        old = list(PendingOrder.objects.select_for_update().filter(position=row, status__in=ACTIVE_PROTECTIVE))
        new = create_legs(account=locked, position=row, spec=spec, base_client_id=base)
        audit_new_legs(account=locked, legs=new, amend=True)
    try:
        place_on_exchange(adapter=adapter, account=account, orders=new)
    except ProtectionFailed as failure:
        _take_back(adapter=adapter, account=account, legs=new, failure=failure)
        alert_protection_failed(
            account=account,
            position=position,
            symbol=position.symbol,
            message=f"amend refused: {failure.message} (the previous legs stay)",
        )
        raise
    with transaction.atomic(), batched_events():
        locked, row = _lock_open(account, position)
        now = timezone.now()
        for leg in PendingOrder.objects.select_for_update().filter(
            pk__in=[o.pk for o in old], status__in=ACTIVE_PROTECTIVE
        ):
            leg.closed_at = now
            cancel_leg(leg, account=locked, reason="replaced by amended protection")
        record_protection(account=locked, position=row, spec=spec)
        record_event(account=locked, kind="position.protection_amended", subject=row, data=_spec_data(spec))
    cancel_legs_left_resting(adapter=adapter, account=account)
    return new


def _take_back(
    *, adapter: ExecutionAdapter, account: Account, legs: list[PendingOrder], failure: ProtectionFailed
) -> None:
    """A new leg was refused: cancel the new legs at the venue, then here (a leg whose cancel
    failed stays marked for reconciliation to cancel); the old legs are untouched."""
    cancel_failed = set()
    for leg in legs:
        try:
            adapter.cancel_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
        except ExecutionError as exc:
            cancel_failed.add(leg.pk)
            logger.error("amend: could not take back %s: %s", leg.client_order_id, exc)
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        for leg in PendingOrder.objects.select_for_update().filter(pk__in=[o.pk for o in legs]):
            if leg.status not in ARMED_PROTECTIVE:
                continue
            leg.error_message, leg.closed_at = failure.message, timezone.now()
            leg.venue_cancel_pending = leg.pk in cancel_failed
            transition(
                leg,
                to_status=PendingOrderStatus.CANCELLED,
                account=locked,
                message=f"amend refused: {failure.message}",
                update_fields=["error_message", "closed_at", "venue_cancel_pending"],
            )
        record_event(
            account=locked,
            kind="position.protection_amend_failed",
            subject=legs[0].position if legs else None,
            message=failure.message,
            data={"kept": "the previous legs", "code": failure.code},
        )


def _spec_data(spec: ProtectionSpec) -> dict[str, object]:
    return {"take_profit": spec.take_profit, "stop_loss": spec.stop_loss, "working_type": spec.working_type}


def cancel_pending_order(
    *, account: Account, order: PendingOrder, adapter: ExecutionAdapter | None = None
) -> PendingOrder:
    """Cancel one protective leg: here first, then at the venue after commit (a venue cancel that
    fails is retried by reconciliation). LEG_NOT_ACTIVE when it is already final."""
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        leg = PendingOrder.objects.select_for_update().get(pk=order.pk)
        if leg.status not in ACTIVE_PROTECTIVE:
            raise StateConflict(f"pending order {leg.pk} is {leg.status}: nothing to cancel", code="LEG_NOT_ACTIVE")
        leg.closed_at = timezone.now()
        cancel_leg(leg, account=locked, reason="cancelled through the API")
        if leg.position_id is not None:
            field_name = "take_profit" if leg.kind == PendingOrderKind.TAKE_PROFIT else "stop_loss"
            Position.objects.filter(pk=leg.position_id).update(**{field_name: None, "updated_at": timezone.now()})
    if leg.venue_cancel_pending:
        cancel_legs_left_resting(adapter=adapter or get_execution_adapter(account), account=account)
        leg.refresh_from_db()
    return leg


# --------------------------------------------------------------------------- trading state


def halt(*, account: Account, reason: str = "") -> HaltReport:
    """Halt the account and run the kill switch (entry orders cancelled, stops kept)."""
    return halt_trading(account=account, reason=reason or "halted through the API")


def resume(*, account: Account, reason: str = "") -> Account:
    return set_trading_state(account=account, state=TradingState.ACTIVE, reason=reason or "resumed through the API")


def reduce_only(*, account: Account, reason: str = "") -> Account:
    return set_trading_state(
        account=account, state=TradingState.REDUCING, reason=reason or "reduce-only through the API"
    )


# --------------------------------------------------------------------------- lifecycle


def reset_paper_account(*, account: Account, paper_balance: Decimal | None = None) -> Account:
    """Paper only: close every position at market, cancel what is left pending, and put the
    wallet back to its deposit (or `paper_balance`) with nothing realized. PAPER_ONLY for a live
    account; RESET_INCOMPLETE (nothing reset) when a position could not be closed."""
    if not account.is_paper_trading:
        raise StateConflict(f"account {account.pk} is live: only a paper account can be reset", code="PAPER_ONLY")
    report = close_all_positions(account=account)
    if report.errors:
        raise StateConflict(
            f"account {account.pk} could not close {', '.join(sorted(report.errors))}: nothing was reset",
            code="RESET_INCOMPLETE",
            details={"errors": report.errors},
        )
    with transaction.atomic(), batched_events():
        locked = lock_account(account.pk)
        if Position.objects.filter(account=locked, status=PositionStatus.OPEN).exists():
            raise StateConflict(f"account {account.pk} opened a position meanwhile", code="RESET_INCOMPLETE")
        now = timezone.now()
        for leg in PendingOrder.objects.select_for_update().filter(account=locked, status__in=ACTIVE_PROTECTIVE):
            leg.closed_at = now
            cancel_leg(leg, account=locked, reason="account reset")
    return reset_paper_wallet(account=account, paper_balance=paper_balance)
