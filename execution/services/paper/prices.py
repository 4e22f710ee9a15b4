"""What the sweep knows of prices: the mark (and last) price per symbol, and the completed
1-minute candles since the last sweep, so that a crossing between two sweeps is not missed.

Prices come from the price cache (the stream process writes it) when it is fresh, per symbol.
Only the symbols whose cached price is missing or stale (the stream is down or lagging) are
polled over REST: one premiumIndex request for all of them, one ticker/price request when
one of them has a CONTRACT_PRICE order pending. Klines per symbol at most once a minute
(cached) for the crossing check, whatever the source of the price.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import redis
from django.core.cache import cache

from execution.aster.replies import Kline
from execution.models import WorkingType
from execution.services import price_cache
from execution.services.exchange import public_client
from execution.services.market_data import MarketDataUnavailable, fetch, is_stale

logger = logging.getLogger(__name__)

KLINE_CANDLES = 3  # the current minute and the two before it


@dataclass(frozen=True)
class Candle:
    open_time: datetime
    low: Decimal
    high: Decimal


@dataclass
class SymbolPrices:
    mark: Decimal
    last: Decimal | None
    next_funding_time_ms: int = 0
    # No fresh last price although a CONTRACT_PRICE order needs one: such orders are not judged
    # on these prices (never on the mark in its place); the sweep will judge them.
    last_missing: bool = False
    source: str = price_cache.STREAM
    mark_candles: list[Candle] = field(default_factory=list)
    last_candles: list[Candle] = field(default_factory=list)

    def price(self, working_type: str) -> Decimal:
        """The price an order of this working type triggers on (the mark when no last price)."""
        if working_type == WorkingType.CONTRACT_PRICE and self.last is not None:
            return self.last
        return self.mark

    def candles(self, working_type: str) -> list[Candle]:
        return self.mark_candles if working_type == WorkingType.MARK_PRICE else self.last_candles

    def bounds(self) -> tuple[Decimal, Decimal]:
        """The lowest and highest price any order of the symbol could have seen."""
        prices = [self.mark] + ([self.last] if self.last is not None else [])
        lows = prices + [c.low for c in (*self.mark_candles, *self.last_candles)]
        highs = prices + [c.high for c in (*self.mark_candles, *self.last_candles)]
        return min(lows), max(highs)


def current_prices(
    symbols: set[str], *, last_for: set[str], now: datetime
) -> tuple[dict[str, SymbolPrices], list[str]]:
    """Fresh prices per symbol, and the symbols skipped for want of a fresh mark (nothing
    triggers, liquidates or marks on old data). `last_for`: the symbols that also need the
    last price (CONTRACT_PRICE orders pending). The cache first; REST for the rest."""
    prices = cached_symbol_prices(symbols, last_for=last_for, now=now, require_last=True)
    missing = symbols - prices.keys()
    if not missing:
        return prices, []
    try:
        polled, skipped = rest_prices(missing, last_for=last_for & missing, now=now)
    except MarketDataUnavailable as exc:
        if not prices:
            raise  # nothing to work with: the sweep fails, visibly
        # REST is down but the stream's prices are fresh for the other symbols: sweep those
        # rather than nothing (only the symbols without a fresh price wait for the next sweep).
        logger.warning("paper sweep: REST prices unavailable (%s); skipped %s", exc, sorted(missing))
        return prices, sorted(missing)
    prices.update(polled)
    return prices, skipped


def cached_symbol_prices(
    symbols: set[str], *, last_for: set[str], now: datetime, require_last: bool
) -> dict[str, SymbolPrices]:
    """The symbols whose cached mark is fresh. A symbol of `last_for` without a fresh cached
    last price is left out when `require_last` (its caller polls REST for it), else kept with
    `last_missing` set."""
    prices: dict[str, SymbolPrices] = {}
    at = now.timestamp()
    try:
        entries = price_cache.cached_prices(symbols)
    except redis.RedisError as exc:  # an unreachable cache is a stale cache: REST (sweep) or skip (reaction)
        logger.warning("price cache unreadable (%s): no cached prices this time", exc)
        return prices
    for symbol, entry in entries.items():
        if entry.mark_price is None or is_stale(entry.event_time_ms, at):
            continue
        last = entry.last_price if entry.last_price is not None and not is_stale(entry.last_event_time_ms, at) else None
        missing_last = symbol in last_for and last is None
        if missing_last and require_last:
            continue
        prices[symbol] = SymbolPrices(
            mark=entry.mark_price,
            last=last,
            next_funding_time_ms=entry.next_funding_time_ms,
            last_missing=missing_last,
        )
    return prices


def rest_prices(symbols: set[str], *, last_for: set[str], now: datetime) -> tuple[dict[str, SymbolPrices], list[str]]:
    """The REST fallback: premiumIndex (and ticker/price for `last_for`) for all symbols at once."""
    client = public_client()
    marks = fetch("premiumIndex", client.premium_indexes)
    lasts = fetch("ticker/price", client.ticker_prices) if last_for else {}
    prices, skipped = {}, []
    for symbol in symbols:
        index = marks.get(symbol)
        if index is None or is_stale(index.time_ms, now.timestamp()):
            skipped.append(symbol)
            continue
        last = lasts.get(symbol)
        prices[symbol] = SymbolPrices(
            mark=index.mark_price,
            last=last.price if last else None,
            next_funding_time_ms=index.next_funding_time_ms,
            source=price_cache.REST,
        )
    if skipped:
        logger.warning("paper sweep skipped symbols without a fresh mark price: %s", sorted(skipped))
    return prices, skipped


def add_candles(prices: dict[str, SymbolPrices], *, last_for: set[str], now: datetime) -> None:
    """Completed 1-minute mark candles for every symbol, last-price candles for `last_for`."""
    for symbol, entry in prices.items():
        entry.mark_candles = candles(symbol, mark=True, now=now)
        if symbol in last_for:
            entry.last_candles = candles(symbol, mark=False, now=now)


def candles(symbol: str, *, mark: bool, now: datetime) -> list[Candle]:
    """The completed candles of the last few minutes, fetched at most once a minute per symbol."""
    cached = cached_candles(symbol, mark=mark, now=now)
    if cached is not None:
        return cached
    minute, key = int(now.timestamp() // 60), _candles_key(symbol, mark=mark)
    client = public_client()
    try:
        call = client.mark_price_klines if mark else client.klines
        klines: list[Kline] = call(symbol, limit=KLINE_CANDLES)
    except Exception as exc:  # crossings between sweeps are a refinement: never fail the sweep for them
        logger.warning("paper sweep: no %s klines for %s: %s", "mark" if mark else "last", symbol, exc)
        return []
    now_ms = now.timestamp() * 1000
    completed = [
        Candle(datetime.fromtimestamp(k.open_time_ms / 1000, tz=now.tzinfo), k.low, k.high)
        for k in klines
        if k.close_time_ms < now_ms
    ]
    cache.set(key, (minute, completed), timeout=120)
    return completed


def cached_candles(symbol: str, *, mark: bool, now: datetime) -> list[Candle] | None:
    """The candles `candles` read this minute (no network); None when not read this minute."""
    cached = cache.get(_candles_key(symbol, mark=mark))
    if cached is not None and cached[0] == int(now.timestamp() // 60):
        return list(cached[1])
    return None


def _candles_key(symbol: str, *, mark: bool) -> str:
    return f"paper-sweep:candles:{'mark' if mark else 'last'}:{symbol}"
