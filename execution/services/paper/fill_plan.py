"""What a triggered order's fill does, decided once for both writers.

`plan_trigger_fill` is pure (no database, no network): given the order, the account's open
position in its symbol (read under the account lock), the order book and the prices, it says
whether the order fills, is cancelled or fails, and with what quantity, price, fee and effect
on the position. `fills.fill_triggered_order` (one order at a time) and `batch_fills` (one
account's orders in a fixed number of statements) both write what it decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from execution.aster.replies import OrderBook
from execution.models import PendingOrder, PendingOrderStatus, Position
from execution.services.paper.book import levels_for, walk_book
from execution.services.paper.prices import SymbolPrices
from execution.services.paper.triggers import TriggerOrder, is_crossed
from execution.services.position_math import FillOutcome, Holding, apply_fill, q

FILLED = "filled"
CANCELLED = "cancelled"
FAILED = "failed"


@dataclass(frozen=True)
class TriggerFill:
    """The decision for one triggered order.

    `outcome` is filled, cancelled or failed. `already_final` means another writer got there
    first (the order is no longer `triggered`): nothing is to be written.
    """

    outcome: str
    message: str = ""
    already_final: bool = False
    quantity: Decimal = Decimal("0")
    price: Decimal = Decimal("0")
    fee: Decimal = Decimal("0")
    effect: FillOutcome | None = None  # the fill applied to the position (filled only)

    @property
    def closes_position(self) -> bool:
        """The fill closes the whole position: every other active leg of it is cancelled."""
        return self.effect is not None and self.effect.closed_everything

    @property
    def net_realized(self) -> Decimal:
        """Realized PnL of the fill net of its fee (a reduce-only fill: all of it closes)."""
        return self.effect.gross_realized_pnl - self.fee if self.effect is not None else Decimal("0")


def fill_client_order_id(order: PendingOrder) -> str:
    return f"{order.client_order_id}-f"[:36]


def plan_trigger_fill(
    *,
    order: PendingOrder,
    position: Position | None,
    book: OrderBook,
    entry: SymbolPrices | None,
    fee_rate: Decimal,
) -> TriggerFill:
    if order.status != PendingOrderStatus.TRIGGERED:
        done = CANCELLED if order.status == PendingOrderStatus.CANCELLED else FILLED
        return TriggerFill(outcome=done, already_final=True)
    if position is None or position.pk != order.position_id:
        return TriggerFill(outcome=CANCELLED, message="its position is already closed")
    quantity = min(order.quantity or position.quantity, position.quantity)
    filled, price = trigger_fill_price(order=order, book=book, quantity=quantity, entry=entry)
    if price is None:
        return TriggerFill(outcome=FAILED, message=f"the visible book holds {filled}; {quantity} could not be filled")
    effect = apply_fill(
        Holding(position.side, position.quantity, position.entry_price), side=order.side, quantity=quantity, price=price
    )
    return TriggerFill(
        outcome=FILLED, quantity=quantity, price=price, fee=q(quantity * price * fee_rate), effect=effect
    )


def trigger_fill_price(
    *, order: TriggerOrder, book: OrderBook, quantity: Decimal, entry: SymbolPrices | None
) -> tuple[Decimal, Decimal | None]:
    """(filled, price) of a triggered order's `quantity` on `book`: the walk's VWAP, no better
    than the trigger when the order was seen crossed only in a candle; price None when the
    visible book holds less than `quantity`."""
    filled, quote = walk_book(levels_for(book, order.side), quantity)
    if filled < quantity:
        return filled, None
    price = q(quote / filled)
    if entry is not None and not is_crossed(order, entry.price(order.working_type)):
        # Seen only in a candle: the price has come back. Fill no better than the trigger.
        price = min(price, order.trigger_price) if order.side == "SELL" else max(price, order.trigger_price)
    return filled, price
