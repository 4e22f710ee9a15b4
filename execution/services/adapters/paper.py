"""Paper trading: fills simulated against the real order book; nothing is sent to a trading endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings

from execution.aster.replies import BookLevel
from execution.exceptions import InsufficientLiquidity
from execution.models import Position, PositionStatus
from execution.services.adapters.base import (
    ExecutionAdapter,
    Fill,
    MarketOrder,
    ProtectiveOrderAck,
    ProtectiveOrderRequest,
    RemotePosition,
)
from execution.services.market_data import book_covering, check_fresh
from execution.services.position_math import q


def walk_book(levels: Sequence[BookLevel], quantity: Decimal) -> tuple[Decimal, Decimal]:
    """Take `quantity` from the best level onwards. Returns (filled quantity, quote amount)."""
    remaining, filled, quote = quantity, Decimal("0"), Decimal("0")
    for level in levels:
        if remaining <= 0:
            break
        take = min(remaining, level.quantity)
        filled += take
        quote += take * level.price
        remaining -= take
    return filled, quote


def simulate_market_fill(symbol: str, side: str, quantity: Decimal) -> Fill:
    """A taker fill at the volume-weighted price of the book levels it consumes, with the taker fee."""
    book = book_covering(symbol, side, quantity)
    check_fresh(book.time_ms, what=f"the {symbol} order book")
    levels = book.asks if side == "BUY" else book.bids
    filled, quote = walk_book(levels, quantity)
    if filled < quantity:
        raise InsufficientLiquidity(
            f"the visible {symbol} book holds {filled} on the {'ask' if side == 'BUY' else 'bid'} side; "
            f"{quantity} cannot be filled",
            details={"visible": str(filled), "requested": str(quantity)},
        )
    return Fill(quantity=quantity, price=q(quote / filled), fee=q(quote * settings.PAPER_TAKER_FEE_RATE))


class PaperExecutionAdapter(ExecutionAdapter):
    mode = "paper"

    def execute_market_order(self, order: MarketOrder) -> Fill:
        return simulate_market_fill(order.symbol, order.side, order.quantity)

    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        # Paper TP/SL live only in the database (PendingOrder rows); nothing to send.
        return [ProtectiveOrderAck(client_order_id=request.client_order_id) for request in requests]

    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        # A paper order is cancelled by its PendingOrder's status; there is no venue.
        return None

    def fetch_positions(self) -> list[RemotePosition]:
        rows = Position.objects.filter(account=self.account, status=PositionStatus.OPEN)
        return [
            RemotePosition(
                symbol=row.symbol,
                side=row.side,
                quantity=row.quantity,
                entry_price=row.entry_price,
                leverage=row.leverage,
                mark_price=row.mark_price,
                unrealized_pnl=row.unrealized_pnl,
                liquidation_price=row.liquidation_price,
            )
            for row in rows
        ]
