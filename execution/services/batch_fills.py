"""Filling one account's triggered paper orders with a fixed number of statements.

The sweep's fast path: one account lock, one read of the orders, positions and their legs,
the arithmetic in memory, then bulk inserts and updates and one batch of audit events. The
result is the one the per-order path (`paper_sweep.fill_triggered_order`) gives; if anything
goes wrong the whole batch rolls back and the sweep falls back to that path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.audit import batched_events, record_event, transition_unsaved
from accounts.models import Account
from execution.aster.replies import OrderBook
from execution.models import (
    PendingOrder,
    PendingOrderStatus,
    Position,
    PositionStatus,
    Trade,
    TradeStatus,
)
from execution.services.adapters.paper import walk_book
from execution.services.bulk_sql import bulk_insert_rows, bulk_update_rows
from execution.services.ledger import lock_account, protective_fill_reason, refresh_risk_fields
from execution.services.position_math import Holding, apply_fill, q

ACTIVE = (PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED, PendingOrderStatus.FAILED)
ORDER_FIELDS = ["status", "trade", "closed_at", "error_message", "updated_at"]
POSITION_FIELDS = [
    "status",
    "quantity",
    "realized_pnl",
    "fees_paid",
    "margin",
    "liquidation_price",
    "unrealized_pnl",
    "mark_price",
    "needs_protection",
    "closed_at",
    "updated_at",
]


@dataclass
class Batch:
    account: Account
    now: datetime
    orders: dict[int, PendingOrder]
    positions: dict[str, Position]
    legs_by_position: dict[int, list[PendingOrder]] = field(default_factory=dict)
    trades: list[tuple[Trade, PendingOrder]] = field(default_factory=list)
    touched_orders: dict[int, PendingOrder] = field(default_factory=dict)
    touched_positions: dict[int, Position] = field(default_factory=dict)
    realized: Decimal = Decimal("0")

    def set_order(self, order: PendingOrder, status: str, message: str = "") -> None:
        transition_unsaved(order, to_status=status, account=self.account, message=message)
        if status in (PendingOrderStatus.FILLED, PendingOrderStatus.CANCELLED):
            order.closed_at = self.now
        self.touched_orders[order.pk] = order


def fill_account_batch(
    account_id: int,
    orders: list[PendingOrder],
    books: dict[tuple[str, str], OrderBook],
    prices: dict[str, object],
    now: datetime,
) -> list[str]:
    """Fill the account's claimed orders (in the given order: stops first). Returns outcomes."""
    with transaction.atomic(), batched_events():
        batch = _load(account_id, orders, now)
        outcomes = [
            _fill(batch, order.pk, books[(order.symbol, order.side)], prices.get(order.symbol)) for order in orders
        ]
        _write(batch)
    return outcomes


def _load(account_id: int, orders: list[PendingOrder], now: datetime) -> Batch:
    account = lock_account(account_id)
    symbols = {o.symbol for o in orders}
    positions = {
        p.symbol: p
        for p in Position.objects.select_for_update().filter(
            account=account, status=PositionStatus.OPEN, symbol__in=symbols
        )
    }
    rows = PendingOrder.objects.select_for_update().filter(
        Q(pk__in=[o.pk for o in orders]) | Q(position__in=list(positions.values()), status__in=ACTIVE)
    )
    batch = Batch(account=account, now=now, orders={row.pk: row for row in rows}, positions=positions)
    for row in batch.orders.values():
        if row.position_id is not None:
            batch.legs_by_position.setdefault(row.position_id, []).append(row)
    return batch


def _fill(batch: Batch, order_id: int, book: OrderBook, entry: object) -> str:
    from execution.services.paper_sweep import SymbolPrices, is_crossed

    order = batch.orders[order_id]
    if order.status != PendingOrderStatus.TRIGGERED:
        return "cancelled" if order.status == PendingOrderStatus.CANCELLED else "filled"
    position = batch.positions.get(order.symbol)
    if position is None or position.pk != order.position_id:
        batch.set_order(order, PendingOrderStatus.CANCELLED, "its position is already closed")
        return "cancelled"
    quantity = min(order.quantity or position.quantity, position.quantity)
    filled, quote = walk_book(book.asks if order.side == "BUY" else book.bids, quantity)
    if filled < quantity:
        order.error_message = f"the visible book holds {filled}; {quantity} could not be filled"
        batch.set_order(order, PendingOrderStatus.FAILED, order.error_message)
        position.needs_protection = True
        batch.touched_positions[position.pk] = position
        return "failed"
    price = q(quote / filled)
    if isinstance(entry, SymbolPrices) and not is_crossed(order, entry.price(order.working_type)):
        price = min(price, order.trigger_price) if order.side == "SELL" else max(price, order.trigger_price)
    fee = q(quantity * price * settings.PAPER_TAKER_FEE_RATE)
    _book(batch, order, position, quantity, price, fee)
    return "filled"


def _book(
    batch: Batch, order: PendingOrder, position: Position, quantity: Decimal, price: Decimal, fee: Decimal
) -> None:
    outcome = apply_fill(
        Holding(position.side, position.quantity, position.entry_price), side=order.side, quantity=quantity, price=price
    )
    net = outcome.gross_realized_pnl - fee
    position.realized_pnl = q(position.realized_pnl + net)
    position.fees_paid = q(position.fees_paid + fee)
    batch.touched_positions[position.pk] = position
    if outcome.closed_everything:
        position.quantity, position.margin, position.unrealized_pnl = Decimal("0"), Decimal("0"), Decimal("0")
        position.liquidation_price, position.closed_at = None, batch.now
        transition_unsaved(
            position,
            to_status=PositionStatus.CLOSED,
            account=batch.account,
            data={"realized_pnl": position.realized_pnl},
        )
        del batch.positions[position.symbol]
        for other in batch.legs_by_position.get(position.pk, []):  # no protective order survives its position
            if other.pk != order.pk and other.status in ACTIVE:
                batch.set_order(other, PendingOrderStatus.CANCELLED, "position closed")
    else:
        position.quantity = outcome.after.quantity
        refresh_risk_fields(position)
        record_event(
            account=batch.account,
            kind="position.reduced",
            subject=position,
            data={"closed": outcome.closed_quantity, "quantity": position.quantity},
        )
        sibling = batch.orders.get(order.sibling_id) if order.sibling_id else None
        if sibling is not None and sibling.status in ACTIVE:
            batch.set_order(sibling, PendingOrderStatus.CANCELLED, f"its sibling {order.kind} filled")
    trade = Trade(
        account=batch.account,
        position=position,
        symbol=order.symbol,
        side=order.side,
        requested_quantity=quantity,
        quantity=quantity,
        price=price,
        fee=fee,
        realized_pnl=q(net),
        leverage=position.leverage,
        reduce_only=True,
        client_order_id=f"{order.client_order_id}-f",
        status=TradeStatus.FILLED,
        filled_at=batch.now,
        reason=protective_fill_reason(order.kind),
    )
    batch.trades.append((trade, order))
    batch.set_order(order, PendingOrderStatus.FILLED)
    batch.realized += net


def _write(batch: Batch) -> None:
    trades = bulk_insert_rows(Trade, [trade for trade, _ in batch.trades])
    for trade, (_, order) in zip(trades, batch.trades, strict=True):
        order.trade = trade
        record_event(
            account=batch.account,
            kind="trade.filled",
            subject=trade,
            to_status=TradeStatus.FILLED,
            data={
                "quantity": trade.quantity,
                "price": trade.price,
                "fee": trade.fee,
                "realized_pnl": trade.realized_pnl,
                "pending_order": order.pk,
            },
        )
    bulk_update_rows(PendingOrder, list(batch.touched_orders.values()), ORDER_FIELDS)
    bulk_update_rows(Position, list(batch.touched_positions.values()), POSITION_FIELDS)
    if batch.realized:
        batch.account.paper_realized_pnl = q(batch.account.paper_realized_pnl + batch.realized)
        batch.account.save(update_fields=["paper_realized_pnl", "updated_at"])
