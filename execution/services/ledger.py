"""Booking a fill: Trade, Position (open, add, reduce, close, flip), realized PnL, audit events.

Every function here runs inside the caller's transaction with the account row locked
(`select_for_update`): one writer per account at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from accounts.audit import record_event, transition
from accounts.models import Account
from accounts.row_sql import save_fields, save_new
from execution.models import (
    ACTIVE_PROTECTIVE,
    ARMED_PROTECTIVE,
    ExchangeFill,
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    PositionSource,
    PositionStatus,
    Trade,
    TradeReason,
    TradeStatus,
)
from execution.services.brackets import default_tiers
from execution.services.position_math import (
    FillOutcome,
    Holding,
    apply_fill,
    closing_side,
    liquidation_price,
    q,
    unrealized_pnl,
)

ZERO = Decimal("0")


@dataclass(frozen=True)
class BookedFill:
    trade: Trade
    position: Position | None  # the open position afterwards (None when flat)
    closed_position: Position | None  # the position this fill closed, if any
    outcome: FillOutcome
    opened_new: bool  # the open position afterwards was created by this fill


def lock_account(account_id: int) -> Account:
    return Account.objects.select_for_update().get(pk=account_id)


def open_position(account: Account, symbol: str, *, lock: bool = True) -> Position | None:
    qs = Position.objects.filter(account=account, symbol=symbol, status=PositionStatus.OPEN)
    if lock:
        qs = qs.select_for_update()
    return qs.first()


def reduce_only_trade(
    *,
    account: Account,
    symbol: str,
    side: str,
    quantity: Decimal,
    leverage: int | None,
    client_order_id: str,
    reason: str,
) -> Trade:
    """The intent row of a reduce-only fill the service books itself (trigger, liquidation,
    reconciliation); `book_fill` then fills it."""
    return Trade.objects.create(
        account=account,
        symbol=symbol,
        side=side,
        requested_quantity=quantity,
        quantity=quantity,
        leverage=leverage,
        reduce_only=True,
        client_order_id=client_order_id[:36],
        reason=reason,
    )


def leg_fill_client_id(leg: PendingOrder, sequence: int) -> str:
    """The closing trade of a protective leg's fill: `<leg>-f`; a later partial fill `<leg>-f2`, ...
    The user-data stream and reconciliation name them alike, so one fill can never be booked
    under two names (the trade's client id is unique). Within 36 characters."""
    suffix = "-f" if sequence <= 1 else f"-f{sequence}"
    client_id = f"{leg.client_order_id}{suffix}"
    if len(client_id) > 36:
        client_id = f"f{hashlib.sha256(leg.client_order_id.encode()).hexdigest()[:24]}{suffix}"
    return client_id


def leg_fill_trades(leg: PendingOrder) -> list[Trade]:
    """The closing trades booked for `leg`'s fills (`<leg>-f`, `-f2`, ...), by the user-data
    stream or by reconciliation, oldest first."""
    base = leg_fill_client_id(leg, 1)
    trades = Trade.objects.filter(account_id=leg.account_id, client_order_id__startswith=base).order_by("pk")
    return [t for t in trades if t.client_order_id == base or t.client_order_id[len(base) :].isdigit()]


def booked_leg_fills(leg: PendingOrder) -> tuple[int, Decimal]:
    """How many fills of `leg` are booked (by the stream or by reconciliation), and their
    quantity: a later booking of the leg's fill books only the rest, under the next name."""
    trades = leg_fill_trades(leg)
    return len(trades), sum((t.requested_quantity for t in trades), ZERO)


def leg_quantity_booked_by_reconciliation(leg: PendingOrder) -> Decimal:
    """The leg's cumulative executed quantity (`z`) that reconciliation has booked up to: its
    last booking covered every execution up to there, those the stream had booked before it
    (trades with an `ExchangeFill`) and the rest (its own, without one). A later event with a
    cumulative quantity not above this one is an execution already booked. 0: none."""
    trades = leg_fill_trades(leg)
    streamed = set(ExchangeFill.objects.filter(trade__in=trades).values_list("trade_id", flat=True))
    last = max((t.pk for t in trades if t.pk not in streamed), default=None)
    if last is None:
        return ZERO
    return sum((t.requested_quantity for t in trades if t.pk <= last), ZERO)


def protective_fill_reason(kind: str) -> str:
    return TradeReason.TAKE_PROFIT if kind == PendingOrderKind.TAKE_PROFIT else TradeReason.STOP_LOSS


def refresh_risk_fields(position: Position, mark_price: Decimal | None = None) -> None:
    """Margin (isolated: entry notional / leverage), liquidation price and uPnL after a change."""
    position.margin = q(position.quantity * position.entry_price / position.leverage)
    lp = liquidation_price(position.side, position.quantity, position.entry_price, position.margin, default_tiers())
    position.liquidation_price = q(lp) if lp is not None else None
    mark = mark_price if mark_price is not None else position.mark_price
    if mark is not None:
        position.mark_price = mark
        position.unrealized_pnl = q(unrealized_pnl(position.side, position.quantity, position.entry_price, mark))


def cancel_active_pending(
    position: Position, *, account: Account, reason: str, keep: PendingOrder | None = None
) -> list[PendingOrder]:
    """No protective order survives its position (except `keep`, the one being filled). Returns
    the legs cancelled; those resting on a venue are marked to be cancelled there after commit."""
    if position.__dict__.pop("active_legs_under_lock", None) == 0:
        # Counted by the order path's locking read in this transaction (order_sql), used once:
        # no active leg to look for.
        return []
    qs = PendingOrder.objects.select_for_update().filter(position=position, status__in=ACTIVE_PROTECTIVE)
    if keep is not None:
        qs = qs.exclude(pk=keep.pk)
    cancelled = list(qs)
    for order in cancelled:
        order.closed_at = position.closed_at or order.updated_at
        cancel_leg(order, account=account, reason=reason)
    return cancelled


def cancel_leg(order: PendingOrder, *, account: Account, reason: str) -> None:
    """Cancel a leg here. One the venue holds (it has an exchange id) stays marked until the venue
    has cancelled it too: the caller cancels it there after its transaction commits (never a
    network call inside it), and reconciliation retries what that could not cancel."""
    fields = ["closed_at"]
    if order.exchange_order_id and order.status in ARMED_PROTECTIVE:
        order.venue_cancel_pending = True
        fields.append("venue_cancel_pending")
    transition(order, to_status=PendingOrderStatus.CANCELLED, account=account, message=reason, update_fields=fields)


def mark_leg_filled(
    leg: PendingOrder, *, trade: Trade | None, account: Account, now: datetime, price: Decimal, quantity: Decimal
) -> None:
    """A protective leg filled (its fill booked on `trade`, when there was a position to book it on)."""
    leg.trade, leg.closed_at = trade, now
    transition(
        leg,
        to_status=PendingOrderStatus.FILLED,
        account=account,
        update_fields=["trade", "closed_at"],
        data={"price": price, "quantity": quantity},
    )


def cancel_sibling(order: PendingOrder, *, account: Account, now: datetime) -> None:
    """The other leg of a pair whose leg filled (and left the position open) is cancelled."""
    if order.sibling_id is None:
        return
    sibling = PendingOrder.objects.select_for_update().get(pk=order.sibling_id)
    if sibling.status in ACTIVE_PROTECTIVE:
        sibling.closed_at = now
        cancel_leg(sibling, account=account, reason=f"its sibling {order.kind} filled")


def book_fill(
    *,
    account: Account,
    trade: Trade,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    leverage: int,
    now: datetime,
    exchange_order_id: str = "",
    keep_pending: PendingOrder | None = None,
    realized_floor: Decimal | None = None,
    protection: tuple[Decimal | None, Decimal | None] | None = None,
    position: Position | None,
) -> BookedFill:
    """Apply a fill of `trade` (status submitting/unknown) to `position` (the account's open
    position in the symbol, read under the lock, or None) and audit it.

    `realized_floor` caps the loss of the closed part (liquidation of an isolated position
    cannot lose more than its margin).

    A reduce-only fill never opens or flips: it books at most what the position still holds (a
    stop, a liquidation or another close may have shrunk it since the order was planned).
    """
    if trade.reduce_only:
        reducible = position.quantity if position is not None and closing_side(position.side) == trade.side else ZERO
        if reducible <= 0:
            return _nothing_to_reduce(
                account=account,
                trade=trade,
                quantity=quantity,
                price=price,
                fee=fee,
                now=now,
                exchange_order_id=exchange_order_id,
            )
        if quantity > reducible:
            fee, quantity = q(fee * reducible / quantity), reducible
    holding = Holding(position.side, position.quantity, position.entry_price) if position else Holding.flat()
    outcome = apply_fill(holding, side=trade.side, quantity=quantity, price=price)
    close_fee = fee * outcome.closed_quantity / quantity
    open_fee = fee - close_fee
    net_realized = outcome.gross_realized_pnl - fee
    if realized_floor is not None and net_realized < realized_floor:
        net_realized = realized_floor
        close_fee = fee  # whatever the cap leaves is the fee's problem, not the wallet's
    closed_position = None
    resulting = position
    opened_new = outcome.opened_quantity > 0 and (position is None or outcome.flipped)
    if position is not None and outcome.closed_quantity > 0:
        _reduce(position, outcome, net_realized + open_fee, close_fee, account=account, now=now, keep=keep_pending)
        if position.status == PositionStatus.CLOSED:
            closed_position, resulting = position, None
    if outcome.opened_quantity > 0:
        resulting = _open_or_add(
            resulting, outcome, trade, open_fee, leverage, account=account, now=now, protection=protection
        )
    if account.is_paper_trading:
        account.paper_realized_pnl = q(account.paper_realized_pnl + net_realized)
        save_fields(account, ["paper_realized_pnl"])
    _fill_trade(
        trade, quantity, price, fee, net_realized, resulting or closed_position, exchange_order_id, account, now
    )
    return BookedFill(trade, resulting, closed_position, outcome, opened_new)


def _nothing_to_reduce(
    *,
    account: Account,
    trade: Trade,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    now: datetime,
    exchange_order_id: str,
) -> BookedFill:
    """A reduce-only fill finds nothing left to reduce. Paper: the fill was only simulated, so the
    intent is cancelled. Live: the venue did execute it (so it held a position this ledger no
    longer shows): the fill is recorded without touching any position, and reconciliation
    aligns the positions with the venue."""
    outcome = FillOutcome(Holding.flat(), Holding.flat(), ZERO, ZERO, ZERO)
    if account.is_paper_trading:
        trade.error_code, trade.error_message = "NOTHING_TO_REDUCE", "the position closed before this fill was booked"
        transition(
            trade,
            to_status=TradeStatus.CANCELLED,
            account=account,
            message=trade.error_message,
            update_fields=["error_code", "error_message"],
        )
        return BookedFill(trade, None, None, outcome, False)
    _fill_trade(trade, quantity, price, fee, -fee, None, exchange_order_id, account, now)
    record_event(
        account=account,
        kind="trade.unmatched_reduce",
        subject=trade,
        message="a reduce-only fill with no local position to reduce: left to reconciliation",
        data={"quantity": quantity, "price": price},
    )
    return BookedFill(trade, None, None, outcome, False)


def _reduce(
    position: Position,
    outcome: FillOutcome,
    realized: Decimal,
    fee: Decimal,
    *,
    account: Account,
    now: datetime,
    keep: PendingOrder | None,
) -> None:
    position.realized_pnl = q(position.realized_pnl + realized)
    position.fees_paid = q(position.fees_paid + fee)
    fields = ["realized_pnl", "fees_paid", "quantity", "margin", "liquidation_price", "unrealized_pnl", "mark_price"]
    if outcome.closed_everything:
        position.quantity = Decimal("0")
        position.margin = Decimal("0")
        position.unrealized_pnl = Decimal("0")
        position.liquidation_price = None
        position.closed_at = now
        transition(
            position,
            to_status=PositionStatus.CLOSED,
            account=account,
            update_fields=[*fields, "closed_at"],
            data={"realized_pnl": position.realized_pnl},
        )
        cancel_active_pending(position, account=account, reason="position closed", keep=keep)
        return
    position.quantity = outcome.after.quantity
    refresh_risk_fields(position)
    save_fields(position, fields)
    record_event(
        account=account,
        kind="position.reduced",
        subject=position,
        data={"closed": outcome.closed_quantity, "quantity": position.quantity},
    )


def _open_or_add(
    position: Position | None,
    outcome: FillOutcome,
    trade: Trade,
    fee: Decimal,
    leverage: int,
    *,
    account: Account,
    now: datetime,
    protection: tuple[Decimal | None, Decimal | None] | None,
) -> Position:
    """`protection` (TP, SL) is written with the position when the order asked for it."""
    if position is not None:  # add to the same side
        position.quantity = outcome.after.quantity
        position.entry_price = q(outcome.after.entry_price)
        position.leverage = leverage
        position.fees_paid = q(position.fees_paid + fee)
        position.realized_pnl = q(position.realized_pnl - fee)
        refresh_risk_fields(position)
        save_fields(
            position,
            [
                "quantity",
                "entry_price",
                "leverage",
                "fees_paid",
                "realized_pnl",
                "margin",
                "liquidation_price",
                "unrealized_pnl",
                "mark_price",
            ],
        )
        record_event(
            account=account,
            kind="position.increased",
            subject=position,
            data={"added": outcome.opened_quantity, "quantity": position.quantity},
        )
        return position
    assert outcome.after.side is not None
    take_profit, stop_loss = protection or (None, None)
    created = Position(
        take_profit=take_profit,
        stop_loss=stop_loss,
        account=account,
        symbol=trade.symbol,
        side=outcome.after.side,
        quantity=outcome.after.quantity,
        entry_price=q(outcome.after.entry_price),
        leverage=leverage,
        fees_paid=q(fee),
        realized_pnl=q(-fee),
        source=PositionSource.EXECUTION,
        opened_at=now,
    )
    refresh_risk_fields(created, mark_price=created.entry_price)
    save_new(created)  # queued in the order path's deferred writes, with a key taken ahead
    record_event(
        account=account,
        kind="position.opened",
        subject=created,
        to_status=PositionStatus.OPEN,
        data={"side": created.side, "quantity": created.quantity, "entry_price": created.entry_price},
    )
    return created


def _fill_trade(
    trade: Trade,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    realized: Decimal,
    position: Position | None,
    exchange_order_id: str,
    account: Account,
    now: datetime,
) -> None:
    trade.quantity = quantity
    trade.price = q(price)
    trade.fee = q(fee)
    trade.realized_pnl = q(realized)
    trade.position = position
    trade.filled_at = now
    trade.exchange_order_id = exchange_order_id or trade.exchange_order_id
    transition(
        trade,
        to_status=TradeStatus.FILLED,
        account=account,
        update_fields=["quantity", "price", "fee", "realized_pnl", "position", "filled_at", "exchange_order_id"],
        data={"quantity": trade.quantity, "price": trade.price, "fee": trade.fee, "realized_pnl": trade.realized_pnl},
    )


def close_whole_position(
    *,
    account: Account,
    position: Position,
    price: Decimal,
    fee: Decimal,
    reason: str,
    client_order_id: str,
    now: datetime,
    exchange_order_id: str = "",
    realized_floor: Decimal | None = None,
) -> BookedFill:
    """Book the close of all of `position` at `price` (liquidation, reconciliation)."""
    trade = reduce_only_trade(
        account=account,
        symbol=position.symbol,
        side=closing_side(position.side),
        quantity=position.quantity,
        leverage=position.leverage,
        client_order_id=client_order_id,
        reason=reason,
    )
    return book_fill(
        account=account,
        position=position,
        trade=trade,
        quantity=position.quantity,
        price=price,
        fee=fee,
        leverage=position.leverage,
        now=now,
        exchange_order_id=exchange_order_id,
        realized_floor=realized_floor,
    )
