"""Read-only market data for both engines, with exchange errors turned into service errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from django.conf import settings

from execution.aster.client import AsterClient
from execution.aster.errors import AsterError, AsterInputError
from execution.aster.replies import OrderBook, PremiumIndex
from execution.aster.rules import SymbolRules
from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.services.exchange import public_client

T = TypeVar("T")
BOOK_LIMITS = (20, 100, 1000)  # the smallest book that covers the quantity: less weight, less parsing


class MarketDataUnavailable(ExecutionError):
    code = "MARKET_DATA_UNAVAILABLE"


@dataclass(frozen=True)
class MarketSnapshot:
    symbol: str
    rules: SymbolRules
    mark_price: Decimal
    time_ms: int


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
    """Symbol rules and the mark price: what the risk checks need, fetched before any lock."""
    rules = symbol_rules(symbol, client)
    index: PremiumIndex = fetch("premiumIndex", lambda: (client or public_client()).premium_index(symbol))
    return MarketSnapshot(symbol=symbol, rules=rules, mark_price=index.mark_price, time_ms=index.time_ms)


def age_seconds(time_ms: int, now: float | None = None) -> float:
    """How old the exchange's timestamp is; 0 when the reply carried none (nothing to judge)."""
    if not time_ms:
        return 0.0
    return (now if now is not None else time.time()) - time_ms / 1000


def is_stale(time_ms: int, now: float | None = None) -> bool:
    """The one staleness rule: older than EXECUTION_STALE_PRICE_SECONDS."""
    limit: float = settings.EXECUTION_STALE_PRICE_SECONDS
    return age_seconds(time_ms, now) > limit


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
