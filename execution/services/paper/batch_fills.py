"""Writing one account's triggered-order fills with a fixed number of statements.

The sweep's fast path: one account lock, one read of the orders, positions and their legs,
the plans (`fill_plan.plan_trigger_fill`, the same decisions the per-order writer books)
applied in memory, then bulk inserts and updates and one COPY of audit events. Every status
change goes through `accounts.audit.transition_row` (the table checked, the event built as a
tuple: no model object per event); the rows are then written in bulk in the same
transaction. Its rows and events are the per-order writer's (a property test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import EventRow, event_row, insert_event_rows, transition_row
from accounts.models import Account
from execution.aster.replies import OrderBook
from execution.models import (
    ACTIVE_PROTECTIVE,
    PendingOrder,
    PendingOrderStatus,
    Position,
    PositionStatus,
    Trade,
    TradeStatus,
)
from execution.services.bulk_sql import bulk_insert_rows, bulk_update_rows
from execution.services.ledger import lock_account, protective_fill_reason, refresh_risk_fields
from execution.services.paper.fill_plan import FAILED, FILLED, TriggerFill, fill_client_order_id, plan_trigger_fill
from execution.services.paper.prices import SymbolPrices
from execution.services.position_math import q

# "status" is written here for rows that went through transition_unsaved (see the module doc).
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


class Claimed(Protocol):
    """What the batch needs of a claimed order before it reads it under the lock."""

    @property
    def pk(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...


@dataclass
class Batch:
    account: Account
    now: datetime
    orders: dict[int, PendingOrder]
    positions: dict[str, Position]
    at: datetime = field(default_factory=timezone.now)  # the events' and rows' write time
    legs_by_position: dict[int, list[PendingOrder]] = field(default_factory=dict)
    # Each new trade with the index of its event in `events` (its key is known once inserted).
    trades: list[tuple[Trade, PendingOrder, int]] = field(default_factory=list)
    touched_orders: dict[int, PendingOrder] = field(default_factory=dict)
    touched_positions: dict[int, Position] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    realized: Decimal = Decimal("0")

    def transition(self, obj: Any, status: str, message: str = "", data: dict[str, Any] | None = None) -> None:
        self.events.append(
            transition_row(obj, to_status=status, account_id=self.account.pk, at=self.at, message=message, data=data)
        )

    def set_order(
        self, order: PendingOrder, status: str, message: str = "", data: dict[str, Any] | None = None
    ) -> None:
        self.transition(order, status, message, data)
        if status in (PendingOrderStatus.FILLED, PendingOrderStatus.CANCELLED):
            order.closed_at = self.now
        self.touched_orders[order.pk] = order


def fill_account_batch(
    account_id: int,
    orders: Sequence[Claimed],
    books: dict[tuple[str, str], OrderBook],
    prices: dict[str, SymbolPrices],
    now: datetime,
) -> list[str]:
    """Fill the account's claimed orders (in the given order: stops first). Returns outcomes."""
    with transaction.atomic():
        batch = _load(account_id, orders, now)
        outcomes = [
            _apply(batch, order.pk, books[(order.symbol, order.side)], prices.get(order.symbol)) for order in orders
        ]
        _write(batch)
    return outcomes


def _load(account_id: int, orders: Sequence[Claimed], now: datetime) -> Batch:
    account = lock_account(account_id)
    symbols = {o.symbol for o in orders}
    positions = {
        p.symbol: p
        for p in Position.objects.select_for_update().filter(
            account=account, status=PositionStatus.OPEN, symbol__in=symbols
        )
    }
    rows = PendingOrder.objects.select_for_update().filter(
        Q(pk__in=[o.pk for o in orders]) | Q(position__in=list(positions.values()), status__in=ACTIVE_PROTECTIVE)
    )
    batch = Batch(account=account, now=now, orders={row.pk: row for row in rows}, positions=positions)
    for row in batch.orders.values():
        if row.position_id is not None:
            batch.legs_by_position.setdefault(row.position_id, []).append(row)
    return batch


def _apply(batch: Batch, order_id: int, book: OrderBook, entry: SymbolPrices | None) -> str:
    order = batch.orders[order_id]
    position = batch.positions.get(order.symbol)
    plan = plan_trigger_fill(
        order=order, position=position, book=book, entry=entry, fee_rate=settings.PAPER_TAKER_FEE_RATE
    )
    if plan.already_final:
        return plan.outcome
    if plan.outcome == FILLED:
        assert position is not None
        _book(batch, order, position, plan)
    elif plan.outcome == FAILED:
        assert position is not None
        order.error_message = plan.message
        batch.set_order(order, PendingOrderStatus.FAILED, plan.message)
        position.needs_protection = True
        batch.touched_positions[position.pk] = position
    else:
        batch.set_order(order, PendingOrderStatus.CANCELLED, plan.message)
    return plan.outcome


def _book(batch: Batch, order: PendingOrder, position: Position, plan: TriggerFill) -> None:
    assert plan.effect is not None
    net = plan.net_realized
    position.realized_pnl = q(position.realized_pnl + net)
    position.fees_paid = q(position.fees_paid + plan.fee)
    batch.touched_positions[position.pk] = position
    if plan.closes_position:
        position.quantity, position.margin, position.unrealized_pnl = Decimal("0"), Decimal("0"), Decimal("0")
        position.liquidation_price, position.closed_at = None, batch.now
        batch.transition(position, PositionStatus.CLOSED, data={"realized_pnl": position.realized_pnl})
        del batch.positions[position.symbol]
        for other in batch.legs_by_position.get(position.pk, []):  # no protective order survives its position
            if other.pk != order.pk and other.status in ACTIVE_PROTECTIVE:
                batch.set_order(other, PendingOrderStatus.CANCELLED, "position closed")
    else:
        position.quantity = plan.effect.after.quantity
        refresh_risk_fields(position)
        batch.events.append(
            event_row(
                account_id=batch.account.pk,
                kind="position.reduced",
                subject_type="position",
                subject_id=position.pk,
                data={"closed": plan.effect.closed_quantity, "quantity": position.quantity},
                at=batch.at,
            )
        )
        sibling = batch.orders.get(order.sibling_id) if order.sibling_id else None
        if sibling is not None and sibling.status in ACTIVE_PROTECTIVE:
            batch.set_order(sibling, PendingOrderStatus.CANCELLED, f"its sibling {order.kind} filled")
    trade = Trade(
        account=batch.account,
        position=position,
        symbol=order.symbol,
        side=order.side,
        requested_quantity=plan.quantity,
        quantity=plan.quantity,
        price=plan.price,
        fee=plan.fee,
        realized_pnl=q(net),
        leverage=position.leverage,
        reduce_only=True,
        client_order_id=fill_client_order_id(order),
        filled_at=batch.now,
        reason=protective_fill_reason(order.kind),
    )
    # The intent and its fill at once: submitting -> filled, audited like the ledger's fill.
    batch.transition(
        trade,
        TradeStatus.FILLED,
        data={"quantity": trade.quantity, "price": trade.price, "fee": trade.fee, "realized_pnl": trade.realized_pnl},
    )
    batch.trades.append((trade, order, len(batch.events) - 1))
    batch.set_order(order, PendingOrderStatus.FILLED, data={"price": plan.price, "quantity": plan.quantity})
    batch.realized += net


def _write(batch: Batch) -> None:
    # The trades first: their keys are what the orders' `trade` and the batched events point to.
    bulk_insert_rows(Trade, [trade for trade, _, _ in batch.trades])
    for trade, order, event in batch.trades:
        order.trade = trade
        row = batch.events[event]
        batch.events[event] = (*row[:3], trade.pk, *row[4:])  # the trade's key
    bulk_update_rows(PendingOrder, list(batch.touched_orders.values()), ORDER_FIELDS)
    bulk_update_rows(Position, list(batch.touched_positions.values()), POSITION_FIELDS)
    if batch.realized:
        batch.account.paper_realized_pnl = q(batch.account.paper_realized_pnl + batch.realized)
        batch.account.save(update_fields=["paper_realized_pnl", "updated_at"])
    insert_event_rows(batch.events)
