"""Market data served in-process from a SimExchange: the engine's own code paths (parsing
included), without HTTP, so a benchmark measures the service and the database."""

from __future__ import annotations

from decimal import Decimal

from execution.aster.replies import FundingRate, Kline, OrderBook, PremiumIndex, TickerPrice
from execution.aster.rules import ExchangeInfo, SymbolRules, parse_exchange_info
from execution.aster.simulator.exchange import SimExchange


class LocalMarketClient:
    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange
        self._info: ExchangeInfo | None = None
        self.requests = 0

    def exchange_info(self) -> ExchangeInfo:
        if self._info is None:
            self.requests += 1
            self._info = parse_exchange_info(self.exchange.exchange_info())
        return self._info

    def symbol_rules(self, symbol: str) -> SymbolRules:
        return self.exchange_info().rules(symbol)

    def premium_index(self, symbol: str) -> PremiumIndex:
        self.requests += 1
        return PremiumIndex.parse(self.exchange.premium_index(self.exchange.symbol(symbol)))

    def premium_indexes(self) -> dict[str, PremiumIndex]:
        self.requests += 1
        return {s: PremiumIndex.parse(self.exchange.premium_index(sym)) for s, sym in self.exchange.symbols.items()}

    def ticker_prices(self) -> dict[str, TickerPrice]:
        self.requests += 1
        now = self.exchange.now_ms()
        return {s: TickerPrice(s, sym.price, now) for s, sym in self.exchange.symbols.items()}

    def order_book(self, symbol: str, *, limit: int = 100) -> OrderBook:
        self.requests += 1
        bids, asks = self.exchange.symbol(symbol).book(limit)
        now = self.exchange.now_ms()
        return OrderBook.parse(symbol, {"lastUpdateId": now, "T": now, "bids": bids, "asks": asks})

    def klines(self, symbol: str, *, limit: int = 500, **_: object) -> list[Kline]:
        self.requests += 1
        return [Kline.parse(row) for row in self.exchange.klines(self.exchange.symbol(symbol), None, None, limit)]

    def mark_price_klines(self, symbol: str, *, limit: int = 500, **_: object) -> list[Kline]:
        self.requests += 1
        rows = self.exchange.klines(self.exchange.symbol(symbol), None, None, limit, mark=True)
        return [Kline.parse(row) for row in rows]

    def funding_rates(self, symbol: str, **_: object) -> list[FundingRate]:
        self.requests += 1
        return []

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.exchange.set_price(symbol, price)
