"""Walking the real order book: how much of a quantity the visible levels fill, and at what quote."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from execution.aster.replies import BookLevel, OrderBook


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


def levels_for(book: OrderBook, side: str) -> Sequence[BookLevel]:
    """A BUY takes the asks, a SELL the bids."""
    return book.asks if side == "BUY" else book.bids
