"""A market-data double for the paper engine: `responses` answers the public endpoints from a
SimExchange (consistent prices, books and filters), and nothing else. Any other request
(a trading endpoint above all) finds no registered URL and fails the test."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import responses

from execution.aster.simulator.exchange import SimExchange

BASE = "http://aster.test"
MARKET_PATHS = {
    "/fapi/v1/exchangeInfo",
    "/fapi/v1/premiumIndex",
    "/fapi/v1/ticker/price",
    "/fapi/v1/depth",
    "/fapi/v1/klines",
    "/fapi/v1/markPriceKlines",
    "/fapi/v1/fundingRate",
    "/fapi/v1/time",
}


class FakeMarket:
    def __init__(self, rsps: responses.RequestsMock, exchange: SimExchange | None = None) -> None:
        self.rsps = rsps
        self.exchange = exchange or SimExchange(seed=1)
        self.stale_ms = 0
        for path in MARKET_PATHS:
            rsps.add_callback(responses.GET, re.compile(re.escape(BASE + path) + r"(\?.*)?$"), callback=self._answer)

    def set_price(self, symbol: str, price: str | Decimal, mark_premium: str | None = None) -> None:
        premium = Decimal(mark_premium) if mark_premium is not None else None
        self.exchange.set_price(symbol, Decimal(str(price)), mark_premium=premium)

    def calls_to(self, path: str) -> int:
        return sum(1 for c in self.rsps.calls if urlsplit(c.request.url).path == path)

    def non_market_calls(self) -> list[str]:
        return [c.request.url for c in self.rsps.calls if urlsplit(c.request.url).path not in MARKET_PATHS]

    def _answer(self, request):  # responses callback: (status, headers, body)
        split = urlsplit(request.url)
        params = dict(parse_qsl(split.query))
        ex = self.exchange
        with ex.lock:
            body = self._body(split.path, params, ex)
        return 200, {}, json.dumps(body)

    def _body(self, path: str, params: dict[str, str], ex: SimExchange):
        symbol = params.get("symbol")
        now = ex.now_ms() - self.stale_ms
        if path.endswith("exchangeInfo"):
            return ex.exchange_info()
        if path.endswith("premiumIndex"):
            rows = [dict(ex.premium_index(s), time=now) for s in ex.symbols.values()]
            return next(r for r in rows if r["symbol"] == symbol) if symbol else rows
        if path.endswith("ticker/price"):
            rows = [{"symbol": s.symbol, "price": str(s.price), "time": now} for s in ex.symbols.values()]
            return next(r for r in rows if r["symbol"] == symbol) if symbol else rows
        if path.endswith("depth"):
            bids, asks = ex.symbol(symbol).book(int(params.get("limit", 100)))
            return {"lastUpdateId": now, "E": now, "T": now, "bids": bids, "asks": asks}
        if path.endswith("markPriceKlines"):
            return ex.klines(
                ex.symbol(symbol), _opt_int(params, "startTime"), None, int(params.get("limit", 500)), mark=True
            )
        if path.endswith("klines"):
            return ex.klines(ex.symbol(symbol), _opt_int(params, "startTime"), None, int(params.get("limit", 500)))
        if path.endswith("fundingRate"):
            return ex.funding_history(
                ex.symbol(symbol), _opt_int(params, "startTime"), None, int(params.get("limit", 100))
            )
        return {"serverTime": now}


def _opt_int(params: dict[str, str], name: str) -> int | None:
    return int(params[name]) if name in params else None
