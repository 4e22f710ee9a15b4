"""Repairs of positions: adopted (on the exchange only), corrected (quantity or entry drift),
replaced (the exchange holds the other side), or closed (flat on the exchange: the exit's price
and fees from the account's trades)."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.audit import batched_events, record_event
from execution.exceptions import ExecutionError
from execution.models import (
    TRADE_IN_FLIGHT,
    Position,
    PositionSource,
    PositionStatus,
    Trade,
    TradeReason,
)
from execution.services.adapters.base import RemotePosition, RemoteTrade
from execution.services.ledger import close_whole_position, lock_account, refresh_risk_fields
from execution.services.position_math import closing_side, q
from execution.services.reconciliation.context import (
    Difference,
    RunContext,
    Snapshot,
    position_view,
    remote_position_view,
)

ZERO = Decimal("0")
LEFT_TO_NEXT_RUN = "changed since the exchange was read: left to the next run"


def check_hedge_rows(ctx: RunContext, snapshot: Snapshot, local: dict[str, Position]) -> None:
    """A LONG/SHORT row means the exchange account is in hedge mode, which the service does not
    trade: not merged, adopted or closed, but a difference that fails closed (each row)."""
    for (symbol, side), remote in sorted(snapshot.hedge_positions.items()):
        position = local.get(symbol)
        ctx.repair(
            Difference(
                "position_hedge_mode",
                symbol,
                position_view(position) if position is not None else {},
                remote_position_view(remote),
            ),
            "none: the exchange account is in hedge mode",
            partial(_refuse_hedge_row, symbol, side),
        )


def _refuse_hedge_row(symbol: str, side: str) -> str:
    raise ExecutionError(
        f"the exchange holds a {side} hedge-mode position in {symbol}; the service trades one-way mode only",
        code="POSITION_MODE",
    )


def check_positions(ctx: RunContext, snapshot: Snapshot) -> None:
    local = {p.symbol: p for p in Position.objects.filter(account=ctx.account, status=PositionStatus.OPEN)}
    check_hedge_rows(ctx, snapshot, local)
    hedged = snapshot.hedge_symbols  # judged above: never closed locally for want of a BOTH row
    changed = {symbol for symbol, position in local.items() if ctx.changed_since_read(position)}
    in_flight: set[str] = set()
    if set(snapshot.positions) - set(local):  # only an adoption needs to know what is being booked
        in_flight = set(
            Trade.objects.filter(account=ctx.account, status__in=TRADE_IN_FLIGHT).values_list("symbol", flat=True)
        )
    for symbol, remote in snapshot.positions.items():
        position = local.get(symbol)
        if symbol in changed or (position is None and symbol in in_flight):
            continue  # booked (or being booked) since the read: the next run compares it
        if position is None:
            ctx.repair(
                Difference("position_missing_locally", symbol, remote=remote_position_view(remote)),
                "adopt the exchange position and protect it",
                partial(_adopt, ctx, remote),
            )
        elif remote.side != position.side:
            ctx.repair(
                Difference("position_side_differs", symbol, position_view(position), remote_position_view(remote)),
                "close the local position, adopt the exchange's",
                partial(_replace_flipped, ctx, position, remote),
            )
        elif position.quantity != remote.quantity or position.entry_price != remote.entry_price:
            ctx.repair(
                Difference("position_drift", symbol, position_view(position), remote_position_view(remote)),
                "set quantity and entry to the exchange's",
                partial(_correct, ctx, position, remote),
            )
    for symbol, position in local.items():
        if symbol not in snapshot.positions and symbol not in changed and symbol not in hedged:
            ctx.repair(
                Difference("position_missing_remotely", symbol, position_view(position), {"positionAmt": "0"}),
                "close locally with the exit from userTrades",
                partial(_close_from_trades, ctx, position),
            )


def _adopt(ctx: RunContext, remote: RemotePosition) -> str:
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        position = Position(
            account=account,
            symbol=remote.symbol,
            side=remote.side,
            quantity=remote.quantity,
            entry_price=remote.entry_price,
            leverage=remote.leverage or 1,
            mark_price=remote.mark_price,
            source=PositionSource.RECONCILIATION,
            needs_protection=True,
        )
        refresh_risk_fields(position)
        if remote.liquidation_price:
            position.liquidation_price = remote.liquidation_price
        position.save()
        record_event(
            account=account,
            kind="position.adopted",
            subject=position,
            to_status=PositionStatus.OPEN,
            data=remote_position_view(remote),
        )
    return f"adopted position #{position.pk}"


def _correct(ctx: RunContext, position: Position, remote: RemotePosition) -> str:
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        position = Position.objects.select_for_update().get(pk=position.pk)
        if ctx.changed_since_read(position):
            return LEFT_TO_NEXT_RUN
        before = position_view(position)
        position.quantity, position.entry_price = remote.quantity, remote.entry_price
        position.leverage = remote.leverage or position.leverage
        refresh_risk_fields(position, mark_price=remote.mark_price)
        if remote.liquidation_price:
            position.liquidation_price = remote.liquidation_price
        position.save(
            update_fields=[
                "quantity",
                "entry_price",
                "leverage",
                "margin",
                "liquidation_price",
                "mark_price",
                "unrealized_pnl",
                "updated_at",
            ]
        )
        record_event(
            account=account,
            kind="position.corrected",
            subject=position,
            data={"before": before, "after": position_view(position)},
        )
    return "corrected"


def _replace_flipped(ctx: RunContext, position: Position, remote: RemotePosition) -> str:
    closed = close_locally(
        ctx,
        position,
        price=remote.entry_price,
        fee=ZERO,
        exchange_order_id="",
        note="the exchange holds the opposite side",
    )
    return _adopt(ctx, remote) if closed else LEFT_TO_NEXT_RUN


def _close_from_trades(ctx: RunContext, position: Position) -> str:
    """Flat on the exchange: the exit's price and fees come from the account's trades since opening."""
    ours = set(
        Trade.objects.filter(account=ctx.account, symbol=position.symbol)
        .exclude(exchange_order_id="")
        .values_list("exchange_order_id", flat=True)
    )
    start = int(position.opened_at.timestamp() * 1000)
    trades = ctx.adapter.trades_since(position.symbol, start_time_ms=start)
    exits = [t for t in trades if t.side == closing_side(position.side) and t.exchange_order_id not in ours]
    price, fee, order_id = _exit_of(exits)
    if price is None:
        raise ExecutionError(
            f"{position.symbol} is flat on the exchange but no closing trade was found since "
            f"{position.opened_at:%Y-%m-%d %H:%M}",
            code="NO_EXIT_TRADE",
        )
    if not close_locally(
        ctx, position, price=price, fee=fee, exchange_order_id=order_id, note="closed on the exchange"
    ):
        return LEFT_TO_NEXT_RUN
    return f"closed at {price:.8f} (fees {fee})"


def close_locally(
    ctx: RunContext, position: Position, *, price: Decimal, fee: Decimal, exchange_order_id: str, note: str
) -> bool:
    """Book the close, then cancel on the exchange the legs it made final (they may still rest).
    A position booked since the exchange was read is left to the next run (returns False)."""
    with transaction.atomic(), batched_events():
        account = lock_account(ctx.account.pk)
        position = Position.objects.select_for_update().get(pk=position.pk)
        if ctx.changed_since_read(position) or position.status != PositionStatus.OPEN:
            return False
        close_whole_position(
            account=account,
            position=position,
            price=price,
            fee=fee,
            reason=TradeReason.RECONCILIATION,
            client_order_id=f"rc{ctx.run.pk}-{position.pk}",
            now=timezone.now(),
            exchange_order_id=exchange_order_id,
        )
        record_event(account=account, kind="position.reconciled_close", subject=position, message=note)
    ctx.cancel_left_resting()
    return True


def _exit_of(trades: list[RemoteTrade]) -> tuple[Decimal | None, Decimal, str]:
    quantity = sum((t.quantity for t in trades), ZERO)
    if quantity <= 0:
        return None, ZERO, ""
    price = sum((t.quantity * t.price for t in trades), ZERO) / quantity
    fee = sum((t.commission for t in trades), ZERO)
    return q(price), q(fee), trades[-1].exchange_order_id
