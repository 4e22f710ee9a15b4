"""Read-only market data for both engines, with exchange errors turned into service errors.

The mark price comes from the price cache when its entry is fresh (the stream process keeps it
within about a second); only a missing or stale entry costs a premiumIndex round trip. Order
books are always read over REST at order time (the paper fill walks the book as it is then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import redis
from django.conf import settings

from execution.aster.client import AsterClient
from execution.aster.errors import AsterError, AsterInputError
from execution.aster.replies import OrderBook, PremiumIndex
from execution.aster.rules import SymbolRules
from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.services import price_cache
from execution.services.exchange import public_client
from execution.services.price_cache import age_seconds, is_stale

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["age_seconds", "check_fresh", "is_stale", "market_snapshot"]  # the staleness rule lives in price_cache
BOOK_LIMITS = (20, 100, 1000)  # the smallest book that covers the quantity: less weight, less parsing


class MarketDataUnavailable(ExecutionError):
    code = "MARKET_DATA_UNAVAILABLE"


@dataclass(frozen=True)
class MarketSnapshot:
    symbol: str
    rules: SymbolRules
    mark_price: Decimal
    time_ms: int
    source: str = price_cache.REST  # where the mark came from: the cache (`stream`) or premiumIndex (`rest`)


@contextmanager
def exchange_errors(what: str) -> Iterator[None]:
    try:
        yield
    except AsterInputError as exc:
        if exc.field == "symbol":
            raise RiskCheckFailed("UNKNOWN_SYMBOL", exc.message) from None
        raise ExecutionError(exc.message, code="INVALID_INPUT") from None
    except AsterError as exc:
        raise MarketDataUnavailable(f"{what}: {exc}") from exc


def fetch(what: str, call: Callable[[], T]) -> T:
    with exchange_errors(what):
        return call()


def symbol_rules(symbol: str, client: AsterClient | None = None) -> SymbolRules:
    rules = fetch("exchangeInfo", lambda: (client or public_client()).symbol_rules(symbol))
    if not rules.tradable:
        raise RiskCheckFailed("UNKNOWN_SYMBOL", f"{symbol} is not trading (status {rules.status})")
    return rules


def market_snapshot(symbol: str, client: AsterClient | None = None) -> MarketSnapshot:
    """Symbol rules (cached exchangeInfo) and the mark price: what the risk checks need, read
    before any lock. A fresh cached mark replaces the premiumIndex round trip; a stale or
    missing one falls back to REST (and a stale REST reply is refused later: STALE_PRICE)."""
    rules = symbol_rules(symbol, client)
    reading = cached_mark(symbol)
    if reading is not None and reading.fresh:
        return MarketSnapshot(
            symbol=symbol,
            rules=rules,
            mark_price=reading.value,
            time_ms=reading.event_time_ms,
            source=price_cache.STREAM,
        )
    index: PremiumIndex = fetch("premiumIndex", lambda: (client or public_client()).premium_index(symbol))
    return MarketSnapshot(symbol=symbol, rules=rules, mark_price=index.mark_price, time_ms=index.time_ms)


def cached_mark(symbol: str) -> price_cache.PriceReading | None:
    """The cached mark with its age; None when there is none or the cache cannot be read (an
    unreachable Redis costs the REST round trip, never the order)."""
    try:
        return price_cache.mark_price(symbol)
    except redis.RedisError as exc:
        logger.warning("price cache unreadable (%s): the mark of %s comes from REST", exc, symbol)
        return None


def check_fresh(time_ms: int, *, what: str, now: float | None = None) -> None:
    """STALE_PRICE when the exchange's timestamp is older than EXECUTION_STALE_PRICE_SECONDS."""
    if is_stale(time_ms, now):
        age = age_seconds(time_ms, now)
        raise RiskCheckFailed(
            "STALE_PRICE", f"{what} is {age:.0f} s old (limit {settings.EXECUTION_STALE_PRICE_SECONDS} s)"
        )


def book_covering(symbol: str, side: str, quantity: Decimal, client: AsterClient | None = None) -> OrderBook:
    """The order book, deep enough to fill `quantity` if the exchange shows that much."""
    book = None
    for limit in BOOK_LIMITS:
        book = fetch("depth", lambda limit=limit: (client or public_client()).order_book(symbol, limit=limit))  # type: ignore[misc]
        levels = book.asks if side == "BUY" else book.bids
        if sum((level.quantity for level in levels), Decimal("0")) >= quantity:
            return book
    assert book is not None
    return book
