"""Market fills against the real order book: walk the levels, volume-weighted price, taker fee."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings

from execution.aster.replies import BookLevel, OrderBook
from execution.exceptions import InsufficientLiquidity
from execution.services.adapters.base import Fill
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


def levels_for(book: OrderBook, side: str) -> Sequence[BookLevel]:
    """A BUY takes the asks, a SELL the bids."""
    return book.asks if side == "BUY" else book.bids


def simulate_market_fill(symbol: str, side: str, quantity: Decimal) -> Fill:
    """A taker fill at the volume-weighted price of the book levels it consumes, with the taker fee."""
    book = book_covering(symbol, side, quantity)
    check_fresh(book.time_ms, what=f"the {symbol} order book")
    filled, quote = walk_book(levels_for(book, side), quantity)
    if filled < quantity:
        raise InsufficientLiquidity(
            f"the visible {symbol} book holds {filled} on the {'ask' if side == 'BUY' else 'bid'} side; "
            f"{quantity} cannot be filled",
            details={"visible": str(filled), "requested": str(quantity)},
        )
    return Fill(quantity=quantity, price=q(quote / filled), fee=q(quote * settings.PAPER_TAKER_FEE_RATE))
