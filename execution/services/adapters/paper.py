"""Paper trading: fills simulated against the real order book; nothing is sent to a trading endpoint.

Paper has no venue: protective orders are PendingOrder rows that the sweep triggers, so the
venue-facing methods give the paper answer (nothing resting, nothing to cancel, no order known
to a venue), and positions are the database's (the paper ledger is the venue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from execution.aster.replies import OrderBook
from execution.exceptions import InsufficientLiquidity
from execution.services.adapters.base import (
    ExecutionAdapter,
    Fill,
    MarketOrder,
    ProtectiveOrderAck,
    ProtectiveOrderRequest,
    RemoteOrder,
    RemotePosition,
    RemoteTrade,
)
from execution.services.market_data import book_covering, check_fresh
from execution.services.paper.book import levels_for, walk_book
from execution.services.position_math import q


def simulate_market_fill(symbol: str, side: str, quantity: Decimal) -> Fill:
    """A taker fill at the volume-weighted price of the book levels it consumes, with the taker fee."""
    return fill_from_book(book_covering(symbol, side, quantity), symbol, side, quantity)


@dataclass(frozen=True)
class BookFill:
    """The order book read before the order's transaction, deep enough for its quantity."""

    book: OrderBook

    def fill(self, order: MarketOrder) -> Fill:
        return fill_from_book(self.book, order.symbol, order.side, order.quantity)


def fill_from_book(book: OrderBook, symbol: str, side: str, quantity: Decimal) -> Fill:
    check_fresh(book.time_ms, what=f"the {symbol} order book")
    filled, quote = walk_book(levels_for(book, side), quantity)
    if filled < quantity:
        raise InsufficientLiquidity(
            f"the visible {symbol} book holds {filled} on the {'ask' if side == 'BUY' else 'bid'} side; "
            f"{quantity} cannot be filled",
            details={"visible": str(filled), "requested": str(quantity)},
        )
    return Fill(quantity=quantity, price=q(quote / filled), fee=q(quote * settings.PAPER_TAKER_FEE_RATE))


class PaperExecutionAdapter(ExecutionAdapter):
    mode = "paper"
    has_venue = False

    def execute_market_order(self, order: MarketOrder) -> Fill:
        return simulate_market_fill(order.symbol, order.side, order.quantity)

    def prepare_fill(self, *, symbol: str, side: str, quantity: Decimal) -> BookFill:
        # The only network call of a paper order's fill, made before its one transaction. The
        # order's quantity after planning (lot rounding, a reduce-only cap) is at most this.
        return BookFill(book_covering(symbol, side, quantity))

    def place_protective_orders(self, requests: Sequence[ProtectiveOrderRequest]) -> list[ProtectiveOrderAck]:
        # Paper TP/SL live only in the database (PendingOrder rows); nothing to send.
        return [ProtectiveOrderAck(client_order_id=request.client_order_id) for request in requests]

    def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        # A paper order is cancelled by its PendingOrder's status; there is no venue.
        return None

    def lookup_order(self, *, symbol: str, client_order_id: str) -> RemoteOrder | None:
        # A paper market order fills (or fails) inside the call: its outcome is never unknown.
        return None

    def fill_of(self, order: RemoteOrder) -> Fill | None:
        return None

    def open_orders(self) -> list[RemoteOrder]:
        return []

    def fetch_positions(self) -> list[RemotePosition]:
        # No venue holds paper positions; the paper ledger (the database) is their only record.
        return []

    def trades_since(self, symbol: str, *, start_time_ms: int) -> list[RemoteTrade]:
        return []
