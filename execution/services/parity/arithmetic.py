"""Pure parity arithmetic: the shadow of a book walk, signed slippage, fees."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from execution.aster.replies import OrderBook
from execution.services.paper.book import levels_for, walk_book
from execution.services.position_math import q

BPS = Decimal("10000")
BPS_PLACES = Decimal("0.0001")
ZERO = Decimal("0")


@dataclass(frozen=True)
class BookShadow:
    """What paper's book walk gives for `quantity`: VWAP and taker fee over what the book covers."""

    price: Decimal | None  # None: the book's side is empty
    fee: Decimal
    covered: Decimal


def shadow_of_book(book: OrderBook, side: str, quantity: Decimal) -> BookShadow:
    """Walk the book exactly as the paper adapter does (paper.book) and charge paper's taker fee."""
    filled, quote = walk_book(levels_for(book, side), quantity)
    if filled <= 0:
        return BookShadow(price=None, fee=ZERO, covered=ZERO)
    return BookShadow(price=q(quote / filled), fee=q(quote * settings.PAPER_TAKER_FEE_RATE), covered=filled)


def slippage_bps(side: str, live: Decimal | None, shadow: Decimal | None) -> Decimal | None:
    """Live against paper in basis points of the paper price, signed so that worse than paper is
    positive: a BUY that paid more, a SELL that received less."""
    if live is None or shadow is None or shadow <= 0:
        return None
    worse = live - shadow if side == "BUY" else shadow - live
    return (worse / shadow * BPS).quantize(BPS_PLACES)


def paper_fee(quantity: Decimal, price: Decimal) -> Decimal:
    return q(quantity * price * settings.PAPER_TAKER_FEE_RATE)
