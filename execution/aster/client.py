"""AsterClient: one HTTP client for AsterDEX futures (public market data and signed endpoints).

Honest about failures (see execution.aster.errors): an order submission that timed out or got
HTTP 503 / -1007 raises AsterOutcomeUnknown and is never retried here; idempotent GETs are
retried a bounded number of times with backoff; everything is checked before it is sent.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter

from execution.aster.errors import (
    AsterError,
    AsterInputError,
    AsterInvalidListenKey,
    AsterInvalidRequest,
    AsterOutcomeUnknown,
    AsterRateLimited,
    AsterResponseError,
    AsterTransportError,
)
from execution.aster.numbers import format_decimal, input_decimal
from execution.aster.ratelimit import LocalWeightBudget, WeightBudget, retry_after_seconds
from execution.aster.replies import (
    Balance,
    FundingRate,
    Kline,
    LeverageResult,
    OrderBook,
    OrderResult,
    PositionRisk,
    PremiumIndex,
    SymbolBrackets,
    TickerPrice,
    UserTrade,
    parse_list,
    reply_bool,
)
from execution.aster.rules import SYMBOL_RE, ExchangeInfo, SymbolRules, parse_exchange_info
from execution.aster.signing import Credentials, Params, V1Credentials, V1Signer, V3Signer

CLIENT_ORDER_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
BANNED_UNTIL_RE = re.compile(r"until (\d{13})")
SIDES = ("BUY", "SELL")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")
TRIGGER_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
UNKNOWN_OUTCOME_CODES = frozenset({-1007})
RETRYABLE_CODES = frozenset({-1001, -1007})
ALREADY_SET_CODES = frozenset({-4046, -4059})
INVALID_LISTEN_KEY = -1125
LISTEN_KEY_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
# listenKey (ASTER_WS.md §2.1): V1 is USER_STREAM security (the API-key header, no timestamp,
# no signature); V3 is signed like every other V3 call.
LISTEN_KEY_PATHS = {"v1": "/fapi/v1/listenKey", "v3": "/fapi/v3/listenKey"}

# Signed paths per API generation (ASTER_API.md sections 3 and 4).
SIGNED_PATHS = {
    "v1": {
        "order": "/fapi/v1/order",
        "openOrders": "/fapi/v1/openOrders",
        "positionRisk": "/fapi/v2/positionRisk",
        "balance": "/fapi/v2/balance",
        "userTrades": "/fapi/v1/userTrades",
        "leverage": "/fapi/v1/leverage",
        "marginType": "/fapi/v1/marginType",
        "positionSide/dual": "/fapi/v1/positionSide/dual",
        "multiAssetsMargin": "/fapi/v1/multiAssetsMargin",
        "leverageBracket": "/fapi/v1/leverageBracket",
    },
    "v3": {
        "order": "/fapi/v3/order",
        "openOrders": "/fapi/v3/openOrders",
        "positionRisk": "/fapi/v3/positionRisk",
        "balance": "/fapi/v3/balance",
        "userTrades": "/fapi/v3/userTrades",
        "leverage": "/fapi/v3/leverage",
        "marginType": "/fapi/v3/marginType",
        "positionSide/dual": "/fapi/v3/positionSide/dual",
        "multiAssetsMargin": "/fapi/v3/multiAssetsMargin",
        "leverageBracket": "/fapi/v3/leverageBracket",
    },
}


def _depth_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _bool_param(value: bool) -> str:
    return "true" if value else "false"


class ExchangeInfoCache:
    """exchangeInfo with a TTL; shareable between clients of one exchange (thread-safe)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.info: ExchangeInfo | None = None
        self.fetched_at = 0.0
        self.lock = threading.Lock()


class AsterClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        recv_window_ms: int = 5000,
        exchange_info_ttl: float = 300.0,
        budget: WeightBudget | None = None,
        info_cache: ExchangeInfoCache | None = None,
        max_get_attempts: int = 3,
        backoff_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AsterInputError("base_url", f"must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.session = session or self._new_session()
        self.timeout = (connect_timeout, read_timeout)
        self.budget = budget or LocalWeightBudget(limit=2400, clock=clock, sleep=sleep)
        self.max_get_attempts = max(1, max_get_attempts)
        self.backoff_seconds = backoff_seconds
        self._clock = clock
        self._sleep = sleep
        self._time_offset_ms = 0
        self._info_cache = info_cache or ExchangeInfoCache(exchange_info_ttl)
        self.requests_sent = 0  # every HTTP request this client made (retries included)
        self._signer: V1Signer | V3Signer | None = None
        self.api_version = ""
        if credentials is not None:
            self._signer = self._make_signer(credentials, recv_window_ms)
            self.api_version = self._signer.version

    def __repr__(self) -> str:
        return f"<AsterClient {self.base_url} {self.api_version or 'public'}>"

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # Retries are decided here, per request kind, never by urllib3.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = "execution-service/1.0"
        return session

    def _make_signer(self, credentials: Credentials, recv_window_ms: int) -> V1Signer | V3Signer:
        if isinstance(credentials, V1Credentials):
            return V1Signer(credentials, recv_window_ms=recv_window_ms, now_ms=self.now_ms)
        return V3Signer(credentials)

    def now_ms(self) -> int:
        """Local time corrected by the measured server-time offset."""
        return int(self._clock() * 1000) + self._time_offset_ms

    # ------------------------------------------------------------------ transport

    def _path(self, name: str) -> str:
        if self._signer is None:
            raise AsterInputError("credentials", f"{name} is a signed endpoint: the client has no credentials")
        return SIGNED_PATHS[self.api_version][name]

    def _build(
        self, method: str, path: str, params: Params, signed: bool, api_key_only: bool = False
    ) -> tuple[str, str | None, dict[str, str]]:
        if api_key_only:  # USER_STREAM security on V1: the key header, nothing signed
            assert isinstance(self._signer, V1Signer)
            payload, headers = urlencode(list(params)), self._signer.api_key_header()
        elif signed:
            assert self._signer is not None
            signed_payload = self._signer.sign(params)
            payload, headers = signed_payload.payload, dict(signed_payload.headers)
        else:
            payload, headers = urlencode(list(params)), {}
        url = f"{self.base_url}{path}"
        if method in ("POST", "PUT"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return url, payload, headers
        return (f"{url}?{payload}" if payload else url), None, headers

    def _request(
        self,
        method: str,
        path: str,
        params: Params = (),
        *,
        signed: bool = False,
        api_key_only: bool = False,
        weight: int = 1,
        submission_id: str | None = None,
    ) -> Any:
        """Send one request. `submission_id` marks an order submission (never retried)."""
        attempts = self.max_get_attempts if method == "GET" else 1
        last_error: AsterError | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff_seconds * (2 ** (attempt - 1)))
            try:
                return self._send_once(
                    method,
                    path,
                    params,
                    signed=signed,
                    api_key_only=api_key_only,
                    weight=weight,
                    submission_id=submission_id,
                )
            except AsterTransportError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _send_once(
        self,
        method: str,
        path: str,
        params: Params,
        *,
        signed: bool,
        weight: int,
        submission_id: str | None,
        api_key_only: bool = False,
    ) -> Any:
        self.budget.acquire(weight)
        url, body, headers = self._build(method, path, params, signed, api_key_only)
        self.requests_sent += 1
        try:
            response = self.session.request(method, url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            reason = f"{type(exc).__name__} on {method} {path}"
            if submission_id is not None:
                raise AsterOutcomeUnknown(
                    f"order submission outcome unknown: {reason}", client_order_id=submission_id
                ) from None
            raise AsterTransportError(reason) from None
        self.budget.record_response(response.status_code, response.headers)
        return self._interpret(response, method, path, submission_id)

    def _interpret(self, response: requests.Response, method: str, path: str, submission_id: str | None) -> Any:
        status = response.status_code
        payload = self._json_or_none(response)
        code, msg = self._error_of(payload)
        if status in (429, 418):
            retry_at = self._clock() + retry_after_seconds(response.headers, 60.0 if status == 429 else 120.0)
            banned_until = BANNED_UNTIL_RE.search(msg or "")
            if status == 418 and banned_until:  # "IP banned until 1700000000000": the ban's own end
                retry_at = max(retry_at, int(banned_until.group(1)) / 1000)
                self.budget.block(retry_at)
            raise AsterRateLimited(msg or "rate limited", retry_at=retry_at, code=code, http_status=status)
        if submission_id is not None and (status >= 500 or code in UNKNOWN_OUTCOME_CODES):
            raise AsterOutcomeUnknown(
                msg or f"HTTP {status}: execution status unknown",
                client_order_id=submission_id,
                code=code,
                http_status=status,
            )
        if status >= 500 or code in RETRYABLE_CODES:
            raise AsterTransportError(msg or f"server error on {method} {path}", code=code, http_status=status)
        if code == INVALID_LISTEN_KEY:
            raise AsterInvalidListenKey(msg or "listenKey does not exist", code=code, http_status=status)
        if status >= 400 or (code is not None and code < 0):
            raise AsterInvalidRequest(msg or f"request refused on {method} {path}", code=code, http_status=status)
        if payload is None:
            raise AsterResponseError(f"{method} {path}: reply is not JSON", http_status=status)
        return payload

    @staticmethod
    def _json_or_none(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    @staticmethod
    def _error_of(payload: Any) -> tuple[int | None, str]:
        if not isinstance(payload, dict) or "code" not in payload:
            return None, ""
        try:
            code = int(payload["code"])
        except (TypeError, ValueError):
            return None, str(payload.get("msg", ""))
        if code >= 0:  # {"code": 200, "msg": "success"} or "200"
            return None, ""
        return code, str(payload.get("msg", ""))

    # ------------------------------------------------------------------ public market data

    def server_time(self) -> int:
        data = self._request("GET", "/fapi/v1/time")
        if not isinstance(data, dict) or "serverTime" not in data:
            raise AsterResponseError("time reply has no serverTime")
        return int(data["serverTime"])

    def sync_time(self) -> int:
        """Measure the server-time offset used for V1 timestamps; returns it in ms."""
        before = self._clock()
        server = self.server_time()
        after = self._clock()
        self._time_offset_ms = server - int((before + after) / 2 * 1000)
        return self._time_offset_ms

    def exchange_info(self, *, refresh: bool = False) -> ExchangeInfo:
        """exchangeInfo, cached for `exchange_info_ttl` seconds."""
        cache = self._info_cache
        with cache.lock:
            if cache.info is not None and not refresh and self._clock() - cache.fetched_at < cache.ttl:
                return cache.info
            info = parse_exchange_info(self._request("GET", "/fapi/v1/exchangeInfo"))
            cache.info, cache.fetched_at = info, self._clock()
            return info

    def symbol_rules(self, symbol: str) -> SymbolRules:
        return self.exchange_info().rules(self._check_symbol(symbol))

    @staticmethod
    def _check_symbol(symbol: Any) -> str:
        if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
            raise AsterInputError("symbol", f"must be an upper-case symbol like BTCUSDT, got {symbol!r}")
        return symbol

    def order_book(self, symbol: str, *, limit: int = 100) -> OrderBook:
        symbol = self._check_symbol(symbol)
        if limit not in DEPTH_LIMITS:
            raise AsterInputError("limit", f"must be one of {DEPTH_LIMITS}, got {limit!r}")
        data = self._request(
            "GET", "/fapi/v1/depth", [("symbol", symbol), ("limit", str(limit))], weight=_depth_weight(limit)
        )
        return OrderBook.parse(symbol, data)

    def ticker_prices(self) -> dict[str, TickerPrice]:
        data = self._request("GET", "/fapi/v1/ticker/price", weight=2)
        return {t.symbol: t for t in parse_list(data, "ticker/price", TickerPrice.parse)}

    def premium_index(self, symbol: str) -> PremiumIndex:
        data = self._request("GET", "/fapi/v1/premiumIndex", [("symbol", self._check_symbol(symbol))])
        return PremiumIndex.parse(data)

    def premium_indexes(self) -> dict[str, PremiumIndex]:
        data = self._request("GET", "/fapi/v1/premiumIndex")
        return {p.symbol: p for p in parse_list(data, "premiumIndex", PremiumIndex.parse)}

    def klines(
        self,
        symbol: str,
        *,
        interval: str = "1m",
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """Candles of the last (contract) price."""
        return self._candles("/fapi/v1/klines", symbol, interval, start_time_ms, end_time_ms, limit)

    def mark_price_klines(
        self,
        symbol: str,
        *,
        interval: str = "1m",
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """Candles of the mark price (what MARK_PRICE triggers follow)."""
        return self._candles("/fapi/v1/markPriceKlines", symbol, interval, start_time_ms, end_time_ms, limit)

    def _candles(
        self, path: str, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Kline]:
        if not 1 <= limit <= 1500:
            raise AsterInputError("limit", f"must be 1..1500, got {limit!r}")
        params = [("symbol", self._check_symbol(symbol)), ("interval", interval)]
        params += self._time_range(start_ms, end_ms)
        params.append(("limit", str(limit)))
        return parse_list(self._request("GET", path, params, weight=_kline_weight(limit)), path, Kline.parse)

    def funding_rates(
        self, symbol: str, *, start_time_ms: int | None = None, end_time_ms: int | None = None, limit: int = 100
    ) -> list[FundingRate]:
        if not 1 <= limit <= 1000:
            raise AsterInputError("limit", f"must be 1..1000, got {limit!r}")
        params = [("symbol", self._check_symbol(symbol)), *self._time_range(start_time_ms, end_time_ms)]
        params.append(("limit", str(limit)))
        return parse_list(self._request("GET", "/fapi/v1/fundingRate", params), "fundingRate", FundingRate.parse)

    @staticmethod
    def _time_range(start_ms: int | None, end_ms: int | None) -> list[tuple[str, str]]:
        params = []
        for name, value in (("startTime", start_ms), ("endTime", end_ms)):
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise AsterInputError(name, f"must be a non-negative integer of ms, got {value!r}")
                params.append((name, str(value)))
        return params

    # ------------------------------------------------------------------ orders (signed)

    def new_order(
        self,
        *,
        symbol: str,
        side: str,
        type: str,
        quantity: Decimal | str | None = None,
        price: Decimal | str | None = None,
        stop_price: Decimal | str | None = None,
        client_order_id: str | None = None,
        reduce_only: bool | None = None,
        close_position: bool | None = None,
        working_type: str | None = None,
        time_in_force: str | None = None,
        response_type: str = "RESULT",
    ) -> OrderResult:
        """Validate, round to the symbol's filters, and send one order.

        Raises AsterInputError before sending anything when an argument is wrong, and
        AsterOutcomeUnknown (never retried) when the submission's outcome is unknown.
        """
        params = self._order_params(
            symbol=symbol,
            side=side,
            type=type,
            quantity=quantity,
            price=price,
            stop_price=stop_price,
            client_order_id=client_order_id,
            reduce_only=reduce_only,
            close_position=close_position,
            working_type=working_type,
            time_in_force=time_in_force,
            response_type=response_type,
        )
        data = self._request(
            "POST", self._path("order"), params, signed=True, submission_id=client_order_id or "(exchange-assigned)"
        )
        return OrderResult.parse(data)

    def _order_params(
        self,
        *,
        symbol: str,
        side: str,
        type: str,
        quantity: Decimal | str | None,
        price: Decimal | str | None,
        stop_price: Decimal | str | None,
        client_order_id: str | None,
        reduce_only: bool | None,
        close_position: bool | None,
        working_type: str | None,
        time_in_force: str | None,
        response_type: str,
    ) -> list[tuple[str, str]]:
        if side not in SIDES:
            raise AsterInputError("side", f"must be BUY or SELL, got {side!r}")
        if type not in ORDER_TYPES:
            raise AsterInputError("type", f"must be one of {', '.join(ORDER_TYPES)}, got {type!r}")
        if client_order_id is not None:
            self.check_client_order_id(client_order_id)
        if working_type is not None and working_type not in WORKING_TYPES:
            raise AsterInputError("working_type", f"must be MARK_PRICE or CONTRACT_PRICE, got {working_type!r}")
        if response_type not in ("ACK", "RESULT"):
            raise AsterInputError("response_type", f"must be ACK or RESULT, got {response_type!r}")
        if close_position and type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise AsterInputError("close_position", "only with STOP_MARKET or TAKE_PROFIT_MARKET")
        if close_position and (quantity is not None or reduce_only):
            raise AsterInputError("close_position", "cannot be combined with quantity or reduce_only")
        if not close_position and quantity is None:
            raise AsterInputError("quantity", f"is required for {type}")
        if type in ("LIMIT", "STOP", "TAKE_PROFIT") and price is None:
            raise AsterInputError("price", f"is required for {type}")
        if type in TRIGGER_TYPES and stop_price is None:
            raise AsterInputError("stop_price", f"is required for {type}")
        # Parse every number before the (possibly network-bound) symbol lookup.
        qty = input_decimal(quantity, field="quantity") if quantity is not None else None
        limit_price = input_decimal(price, field="price") if price is not None else None
        trigger = input_decimal(stop_price, field="stop_price") if stop_price is not None else None
        rules = self.symbol_rules(symbol)
        if not rules.tradable:
            raise AsterInputError("symbol", f"{symbol} is not trading (status {rules.status})")

        params: list[tuple[str, str]] = [("symbol", symbol), ("side", side), ("type", type)]
        if type == "LIMIT":
            params.append(("timeInForce", time_in_force or "GTC"))
        if qty is not None:
            rounded = rules.check_quantity(qty, market=type in ("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET"))
            params.append(("quantity", format_decimal(rounded)))
        if reduce_only is not None and not close_position:
            params.append(("reduceOnly", _bool_param(reduce_only)))
        if limit_price is not None:
            params.append(("price", format_decimal(rules.check_price(limit_price))))
        if client_order_id is not None:
            params.append(("newClientOrderId", client_order_id))
        if trigger is not None:
            params.append(("stopPrice", format_decimal(rules.check_price(trigger, field="stop_price"))))
        if close_position:
            params.append(("closePosition", "true"))
        if working_type is not None:
            params.append(("workingType", working_type))
        params.append(("newOrderRespType", response_type))
        return params

    @staticmethod
    def check_client_order_id(client_order_id: Any) -> str:
        if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID_RE.match(client_order_id):
            raise AsterInputError(
                "client_order_id",
                f"must be 1 to 36 characters from A-Z a-z 0-9 . : / _ -, got {client_order_id!r}"[:120],
            )
        return client_order_id

    def _order_ref(self, symbol: str, order_id: int | None, client_order_id: str | None) -> list[tuple[str, str]]:
        params = [("symbol", self._check_symbol(symbol))]
        if (order_id is None) == (client_order_id is None):
            raise AsterInputError("order_id", "give exactly one of order_id or client_order_id")
        if order_id is not None:
            if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id <= 0:
                raise AsterInputError("order_id", f"must be a positive integer, got {order_id!r}")
            params.append(("orderId", str(order_id)))
        else:
            params.append(("origClientOrderId", self.check_client_order_id(client_order_id)))
        return params

    def query_order(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> OrderResult:
        params = self._order_ref(symbol, order_id, client_order_id)
        return OrderResult.parse(self._request("GET", self._path("order"), params, signed=True))

    def cancel_order(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> OrderResult:
        params = self._order_ref(symbol, order_id, client_order_id)
        return OrderResult.parse(self._request("DELETE", self._path("order"), params, signed=True))

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        params = [("symbol", self._check_symbol(symbol))] if symbol else []
        data = self._request("GET", self._path("openOrders"), params, signed=True, weight=1 if symbol else 40)
        return parse_list(data, "openOrders", OrderResult.parse)

    # ------------------------------------------------------------------ account (signed)

    def position_risk(self, symbol: str | None = None) -> list[PositionRisk]:
        params = [("symbol", self._check_symbol(symbol))] if symbol else []
        data = self._request("GET", self._path("positionRisk"), params, signed=True, weight=5)
        return parse_list(data, "positionRisk", PositionRisk.parse)

    def balances(self) -> list[Balance]:
        data = self._request("GET", self._path("balance"), signed=True, weight=5)
        return parse_list(data, "balance", Balance.parse)

    def user_trades(
        self,
        symbol: str,
        *,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        from_id: int | None = None,
        limit: int = 500,
    ) -> list[UserTrade]:
        if from_id is not None and (start_time_ms is not None or end_time_ms is not None):
            raise AsterInputError("from_id", "cannot be combined with start/end time")
        if not 1 <= limit <= 1000:
            raise AsterInputError("limit", f"must be 1..1000, got {limit!r}")
        params = [("symbol", self._check_symbol(symbol)), *self._time_range(start_time_ms, end_time_ms)]
        if from_id is not None:
            params.append(("fromId", str(int(from_id))))
        params.append(("limit", str(limit)))
        data = self._request("GET", self._path("userTrades"), params, signed=True, weight=5)
        return parse_list(data, "userTrades", UserTrade.parse)

    def set_leverage(self, symbol: str, leverage: int) -> LeverageResult:
        if not isinstance(leverage, int) or isinstance(leverage, bool) or not 1 <= leverage <= 125:
            raise AsterInputError("leverage", f"must be an integer 1..125, got {leverage!r}")
        params = [("symbol", self._check_symbol(symbol)), ("leverage", str(leverage))]
        return LeverageResult.parse(self._request("POST", self._path("leverage"), params, signed=True))

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        """ISOLATED or CROSSED; 'no need to change' (-4046) counts as success."""
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise AsterInputError("margin_type", f"must be ISOLATED or CROSSED, got {margin_type!r}")
        params = [("symbol", self._check_symbol(symbol)), ("marginType", margin_type)]
        self._tolerate_already_set("POST", self._path("marginType"), params)

    def set_position_mode(self, *, hedge: bool) -> None:
        """One-way (hedge=False) or hedge mode; 'no need to change' (-4059) counts as success."""
        self._tolerate_already_set("POST", self._path("positionSide/dual"), [("dualSidePosition", _bool_param(hedge))])

    def position_mode_is_hedge(self) -> bool:
        """True when the account is in hedge (dual-side) mode; weight 30."""
        data = self._request("GET", self._path("positionSide/dual"), signed=True, weight=30)
        return reply_bool(data, "dualSidePosition")

    def multi_assets_mode(self) -> bool:
        """True when the account is in Multi-Assets margin mode; weight 30."""
        data = self._request("GET", self._path("multiAssetsMargin"), signed=True, weight=30)
        return reply_bool(data, "multiAssetsMargin")

    def set_multi_assets_mode(self, *, enabled: bool) -> None:
        """Multi-Assets (True) or Single-Asset mode. Aster documents no 'no need to change'
        code for it; an error is the exchange's, with its code and msg."""
        params = [("multiAssetsMargin", _bool_param(enabled))]
        self._request("POST", self._path("multiAssetsMargin"), params, signed=True)

    def _tolerate_already_set(self, method: str, path: str, params: Params) -> None:
        try:
            self._request(method, path, params, signed=True)
        except AsterInvalidRequest as exc:
            if exc.code not in ALREADY_SET_CODES:
                raise

    def leverage_brackets(self, symbol: str | None = None) -> list[SymbolBrackets]:
        params = [("symbol", self._check_symbol(symbol))] if symbol else []
        data = self._request("GET", self._path("leverageBracket"), params, signed=True)
        items = data if isinstance(data, list) else [data]
        return [SymbolBrackets.parse(item) for item in items]

    # ------------------------------------------------------------------ user-data stream (listenKey)

    def _listen_key_request(self, method: str) -> Any:
        if self._signer is None:
            raise AsterInputError("credentials", "listenKey needs an account's credentials")
        path = LISTEN_KEY_PATHS[self.api_version]
        if self.api_version == "v1":
            return self._request(method, path, api_key_only=True)
        return self._request(method, path, signed=True)

    def create_listen_key(self) -> str:
        """POST: a new listenKey, valid 60 minutes (an active one is returned again and extended)."""
        data = self._listen_key_request("POST")
        key = data.get("listenKey") if isinstance(data, dict) else None
        if not isinstance(key, str) or not LISTEN_KEY_RE.match(key):
            raise AsterResponseError("listenKey reply has no usable listenKey")
        return key

    def keepalive_listen_key(self) -> None:
        """PUT: extend the account's listenKey 60 minutes; AsterInvalidListenKey when it is gone."""
        self._listen_key_request("PUT")

    def close_listen_key(self) -> None:
        """DELETE: end the account's listenKey (its stream stops); a key already gone is not an error."""
        with contextlib.suppress(AsterInvalidListenKey):
            self._listen_key_request("DELETE")

    def user_stream_url(self, ws_base_url: str, listen_key: str) -> str:
        """`<ws base>/ws/<listenKey>` (ASTER_WS.md §2.2)."""
        if not LISTEN_KEY_RE.match(listen_key):
            raise AsterInputError("listen_key", "must be letters and digits")
        if not ws_base_url.startswith(("ws://", "wss://")):
            raise AsterInputError("ws_base_url", f"must be a ws(s) URL, got {ws_base_url!r}")
        return f"{ws_base_url.rstrip('/')}/ws/{listen_key}"
