"""The simulator's HTTP face: the AsterDEX paths, response shapes, signature checks and faults.

Run it with `python manage.py aster_sim --port 8765 [--ws-port 8766]`, or in-process (tests, benchmarks):

    with AsterSimulator(seed=1) as sim:
        client = AsterClient(sim.url, credentials)
        websocket = connect(sim.ws_url + "/ws/btcusdt@markPrice@1s")

The WebSocket streams (market data, user data) are served by streams.py on `ws_port`; the
listenKey REST calls (`POST/PUT/DELETE /fapi/v1/listenKey` with the API-key header only,
`/fapi/v3/listenKey` signed) are here.

Operator and test controls live under /_sim/ (JSON): state, price, step, faults, accounts,
orders placed and cancelled "behind the service's back" (`/_sim/orders`, `/_sim/cancel`), the
next fills split into partial fills (`/_sim/split_fills {"account", "parts", "fills"}`), and the
WebSocket faults under /_sim/ws/ (see streams.py). The same controls are methods of
AsterSimulator. The simulator binds to loopback only.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from execution.aster.signing import hmac_sha256_hex, recover_signer
from execution.aster.simulator.exchange import SimAccount, SimError, SimExchange, SimSymbol, fmt
from execution.aster.simulator.faults import (
    AFTER_ACCEPT_KINDS,
    DEFAULT_BAN_SECONDS,
    ERROR_REPLIES,
    FaultRule,
    Faults,
    OrderFacts,
)
from execution.aster.simulator.listen_keys import DEFAULT_VALIDITY_SECONDS, ListenKeys
from execution.aster.simulator.streams import SimStreams

NONCE_WINDOW_US = 10_000_000
NONCE_MEMORY = 100
REQUEST_LOG_SIZE = 10_000  # (method, path) of the most recent requests, for tests and demos
DEPTH_LIMITS = {5, 10, 20, 50, 100, 500, 1000}
UNKNOWN_OUTCOME = {
    "code": -1007,
    "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
}


@dataclass(frozen=True)
class Route:
    handler: Callable[[SimHandler, SimAccount | None, dict[str, str]], Any]
    weight: int = 1
    signed: str = ""  # "", "v1", "v3" or "apikey" (the API-key header only: V1's USER_STREAM)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, exchange: SimExchange, address: tuple[str, int], *, request_log_size: int = REQUEST_LOG_SIZE
    ) -> None:
        if request_log_size < 0:
            raise ValueError(f"request_log_size must be >= 0, got {request_log_size}")
        super().__init__(address, SimHandler)
        self.exchange = exchange
        self.faults = Faults()
        self.fault_lock = threading.Lock()
        self.banned_until = 0.0
        self.weight_minute = -1
        self.weight_used = 0
        # Bounded: a long-running simulator keeps only the latest requests.
        self.request_log: deque[tuple[str, str]] = deque(maxlen=request_log_size)
        self.listen_keys = ListenKeys(clock=exchange.clock)
        self.streams: SimStreams | None = None  # set by AsterSimulator when it serves WebSockets

    def add_weight(self, weight: int) -> int:
        with self.fault_lock:
            minute = int(time.time() // 60)
            if minute != self.weight_minute:
                self.weight_minute, self.weight_used = minute, 0
            self.weight_used += weight
            return self.weight_used


def _split_signature(raw: str) -> tuple[str, str | None]:
    if raw.startswith("signature="):
        return "", raw[len("signature=") :]
    index = raw.rfind("&signature=")
    if index == -1:
        return raw, None
    return raw[:index], raw[index + len("&signature=") :]


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write, and without Nagle's delay: otherwise every
        # keep-alive response waits ~40 ms for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]  # stdlib internal
        self.flush_headers()

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.close()

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.request_log.append((method, split.path))
        if split.path.startswith("/_sim/"):
            self._admin(method, split.path, body)
            return
        faults, lock = self.server.faults, self.server.fault_lock
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.take("drop_next", lock):
            self._drop()
            return
        if self._refuse_rate_limited():
            return
        route = ROUTES.get((method, split.path))
        if route is None:
            self._send(404, {"code": -1000, "msg": f"Unknown path {method} {split.path}"})
            return
        used = self.server.add_weight(route.weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        rule: FaultRule | None = None
        try:
            params = {
                **dict(parse_qsl(body, keep_blank_values=True)),
                **dict(parse_qsl(split.query, keep_blank_values=True)),
            }
            account = self._authenticate(route.signed, split.query, body, params) if route.signed else None
            rule = self._aimed_rule(method, split.path, params, account)
            if rule is not None and rule.kind not in AFTER_ACCEPT_KINDS:
                self._refuse(rule, headers)
                return
            result = route.handler(self, account, params)
        except SimError as exc:
            self._reply(exc.http_status, {"code": exc.code, "msg": exc.msg}, headers, rule, accepted=False)
            return
        if result is _DROPPED:
            return
        if isinstance(result, tuple):
            self._reply(result[0], result[1], headers, rule, accepted=result[0] < 400)
            return
        self._reply(200, result, headers, rule, accepted=True)

    # ------------------------------------------------------------------ aimed faults

    def _aimed_rule(
        self, method: str, path: str, params: dict[str, str], account: SimAccount | None
    ) -> FaultRule | None:
        faults = self.server.faults
        if not faults.has_rules():
            return None
        order = self._order_facts(method, params, account) if faults.needs_order_facts(method, path) else None
        return faults.take_rule(method, path, order)

    def _order_facts(self, method: str, params: dict[str, str], account: SimAccount | None) -> OrderFacts | None:
        """The order a request is about: the one it places (POST), or the one it names (cancel, query)."""
        if method == "POST" and "type" in params:
            return OrderFacts(
                type=params["type"],
                reduce_only=params.get("reduceOnly", "false") == "true",
                close_position=params.get("closePosition", "false") == "true",
                client_order_id=params.get("newClientOrderId"),
            )
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if account is None or not (order_id or client_id):
            return None
        exchange = self.server.exchange
        with exchange.lock:
            try:
                order = exchange.find_order(account, order_id=order_id, client_order_id=client_id)
            except SimError:
                return OrderFacts(client_order_id=client_id)
            return OrderFacts(
                type=order.type,
                reduce_only=order.reduce_only,
                close_position=order.close_position,
                client_order_id=order.client_order_id,
            )

    def _refuse(self, rule: FaultRule, headers: dict[str, str]) -> None:
        """A rule that refuses the request: nothing is carried out."""
        if rule.kind == "429":
            seconds = rule.seconds if rule.seconds is not None else float(self.server.faults.retry_after_seconds)
            self._send(
                429,
                {"code": -1003, "msg": "Too many requests; current limit is 2400 requests per minute."},
                {**headers, "Retry-After": _header_seconds(seconds)},
            )
        elif rule.kind == "418":
            seconds = rule.seconds if rule.seconds is not None else DEFAULT_BAN_SECONDS
            with self.server.fault_lock:
                self.server.banned_until = max(self.server.banned_until, time.time() + seconds)
            self._send_banned()
        else:
            code, msg = ERROR_REPLIES[rule.kind]
            self._send(400, {"code": code, "msg": msg}, headers)

    def _reply(
        self, status: int, payload: Any, headers: dict[str, str], rule: FaultRule | None, *, accepted: bool
    ) -> None:
        """Send a reply, unless an after-accept rule says otherwise."""
        if rule is not None and rule.kind == "read_timeout":
            seconds = rule.seconds if rule.seconds is not None else self.server.faults.read_timeout_seconds
            time.sleep(seconds)
            try:  # the client has most likely given up and closed the connection
                self._send(status, payload, headers)
            except OSError:
                self.close_connection = True
            return
        if rule is not None and accepted and rule.kind == "drop_after_accept":
            self._drop()
            return
        if rule is not None and accepted and rule.kind == "503_after_accept":
            self._send(503, UNKNOWN_OUTCOME, headers)
            return
        self._send(status, payload, headers)

    def _send_banned(self) -> None:
        retry = str(max(int(self.server.banned_until - time.time()), 1))
        self._send(
            418,
            {"code": -1003, "msg": f"Way too many requests; IP banned until {int(self.server.banned_until * 1000)}."},
            {"Retry-After": retry},
        )

    def _refuse_rate_limited(self) -> bool:
        faults, lock = self.server.faults, self.server.fault_lock
        now = time.time()
        if faults.ban_seconds:
            with lock:
                self.server.banned_until = now + faults.ban_seconds
                faults.ban_seconds = 0.0
        if self.server.banned_until > now:
            self._send_banned()
            return True
        if faults.take("rate_limit_next", lock):
            self._send(
                429,
                {"code": -1003, "msg": "Too many requests; current limit is 2400 requests per minute."},
                {"Retry-After": str(faults.retry_after_seconds)},
            )
            return True
        return False

    # ------------------------------------------------------------------ authentication

    def _authenticate(self, version: str, query: str, body: str, params: dict[str, str]) -> SimAccount:
        if version == "apikey":
            account = self.server.exchange.account_by_api_key(self.headers.get("X-MBX-APIKEY", ""))
            if account is None:
                raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            return account
        query_unsigned, query_signature = _split_signature(query)
        body_unsigned, body_signature = _split_signature(body)
        signature = query_signature or body_signature
        if not signature:
            raise SimError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if version == "v1":
            return self._authenticate_v1(query_unsigned + body_unsigned, signature, params)
        message = query_unsigned if query_signature else body_unsigned
        return self._authenticate_v3(message, signature, params)

    def _authenticate_v1(self, total_params: str, signature: str, params: dict[str, str]) -> SimAccount:
        exchange = self.server.exchange
        account = exchange.account_by_api_key(self.headers.get("X-MBX-APIKEY", ""))
        if account is None:
            raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        expected = hmac_sha256_hex(account.api_secret, total_params)
        if not hmac.compare_digest(expected, signature.lower()):
            raise SimError(-1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise SimError(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        if recv_window > 60_000:
            raise SimError(-1130, "recvWindow must be less than 60000.")
        server_ms = exchange.now_ms()
        if timestamp >= server_ms + 1000:
            raise SimError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server_ms - timestamp > recv_window:
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")
        return account

    def _authenticate_v3(self, message: str, signature: str, params: dict[str, str]) -> SimAccount:
        exchange = self.server.exchange
        signer = params.get("signer", "")
        account = exchange.account_by_signer(signer) if signer else None
        if account is None:
            raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        try:
            recovered = recover_signer(message, signature, exchange.chain_id)
        except Exception:
            raise SimError(-1022, "Signature for this request is not valid.") from None
        if recovered.lower() != signer.lower():
            raise SimError(-1022, "Signature for this request is not valid.")
        user = params.get("user")
        if user and user.lower() != account.user.lower():
            raise SimError(-1022, "Signature for this request is not valid.")
        self._check_nonce(account, params.get("nonce", ""))
        return account

    def _check_nonce(self, account: SimAccount, raw: str) -> None:
        try:
            nonce = int(raw)
        except ValueError:
            raise SimError(-1102, "Mandatory parameter 'nonce' was not sent, was empty/null, or malformed.") from None
        now_us = int(self.server.exchange.clock() * 1_000_000)
        with self.server.exchange.lock:
            if abs(now_us - nonce) > NONCE_WINDOW_US:
                raise SimError(-4225, "Nonce Expired")
            if nonce in account.nonces:
                raise SimError(-4225, "Nonce Expired: duplicate nonce")
            if len(account.nonces) >= NONCE_MEMORY and nonce < min(account.nonces):
                raise SimError(-4225, "Nonce Expired")
            account.nonces.append(nonce)
            if len(account.nonces) > NONCE_MEMORY:
                account.nonces.remove(min(account.nonces))

    # ------------------------------------------------------------------ admin (/_sim/)

    def _admin(self, method: str, path: str, body: str) -> None:
        route = ADMIN_ROUTES.get((method, path))
        if route is None:
            self._send(404, {"error": f"unknown admin path {method} {path}"})
            return
        try:
            data = json.loads(body) if body else {}
            result = route(self.server, data)
        except KeyError as exc:  # a field the request lacks, or an unknown account or symbol
            self._send(400, {"error": f"missing or unknown {exc}"})
        except (SimError, ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})
        else:
            self._send(200, result)


_DROPPED = object()


def _header_seconds(seconds: float) -> str:
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def _symbol(params: dict[str, str]) -> str:
    symbol = params.get("symbol")
    if not symbol:
        raise SimError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    return symbol


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SimError(-1130, f"Illegal characters found in parameter '{name}'.") from None


# ---------------------------------------------------------------------- public handlers


def h_ping(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    return {}


def h_time(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    return {"serverTime": handler.server.exchange.now_ms()}


def h_exchange_info(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    return handler.server.exchange.exchange_info()


def h_depth(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange = handler.server.exchange
    limit = _int_param(params, "limit", 500) or 500
    if limit not in DEPTH_LIMITS:
        raise SimError(-1130, "Invalid limit.")
    with exchange.lock:
        sym = exchange.symbol(_symbol(params))
        bids, asks = sym.book(limit)
    now = exchange.now_ms()
    return {"lastUpdateId": now, "E": now, "T": now, "bids": bids, "asks": asks}


def _one_or_all(handler: SimHandler, params: dict[str, str], render: Callable[[SimSymbol], Any]) -> Any:
    exchange = handler.server.exchange
    with exchange.lock:
        if params.get("symbol"):
            return render(exchange.symbol(params["symbol"]))
        return [render(sym) for sym in exchange.symbols.values()]


def h_ticker_price(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    now = handler.server.exchange.now_ms()
    return _one_or_all(handler, params, lambda s: {"symbol": s.symbol, "price": fmt(s.price), "time": now})


def h_premium_index(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    return _one_or_all(handler, params, handler.server.exchange.premium_index)


def h_klines(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    if params.get("interval") != "1m":
        raise SimError(-1120, "Invalid interval (the simulator serves 1m).")
    exchange = handler.server.exchange
    with exchange.lock:
        sym = exchange.symbol(_symbol(params))
        return exchange.klines(
            sym, _int_param(params, "startTime"), _int_param(params, "endTime"), _int_param(params, "limit", 500) or 500
        )


def h_mark_price_klines(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    if params.get("interval") != "1m":
        raise SimError(-1120, "Invalid interval (the simulator serves 1m).")
    exchange = handler.server.exchange
    with exchange.lock:
        sym = exchange.symbol(_symbol(params))
        return exchange.klines(
            sym,
            _int_param(params, "startTime"),
            _int_param(params, "endTime"),
            _int_param(params, "limit", 500) or 500,
            mark=True,
        )


def h_funding_rate(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange = handler.server.exchange
    with exchange.lock:
        sym = exchange.symbol(_symbol(params))
        return exchange.funding_history(
            sym, _int_param(params, "startTime"), _int_param(params, "endTime"), _int_param(params, "limit", 100) or 100
        )


# ---------------------------------------------------------------------- signed handlers


def _account(account: SimAccount | None) -> SimAccount:
    assert account is not None
    return account


def h_new_order(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    order = handler.server.exchange.place_order(_account(account), params)
    faults, lock = handler.server.faults, handler.server.fault_lock
    if faults.take("order_drop_after_accept", lock):
        handler._drop()
        return _DROPPED
    if faults.take("order_503_after_accept", lock):
        return 503, UNKNOWN_OUTCOME
    reply = order.as_json()
    reply.pop("time", None)
    return reply


def _order_ref(params: dict[str, str]) -> dict[str, str | None]:
    order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
    if not order_id and not client_id:
        raise SimError(-1102, "Either orderId or origClientOrderId must be sent.")
    return {"order_id": order_id, "client_order_id": client_id}


def h_query_order(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange = handler.server.exchange
    with exchange.lock:
        return exchange.find_order(_account(account), **_order_ref(params)).as_json()


def h_cancel_order(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    if handler.server.faults.take("cancel_error", handler.server.fault_lock):
        return 500, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
    return handler.server.exchange.cancel_order(_account(account), **_order_ref(params)).as_json()


def h_open_orders(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    symbol = params.get("symbol")
    with handler.server.exchange.lock:
        return [
            o.as_json()
            for o in _account(account).orders.values()
            if o.is_open and (symbol is None or o.symbol == symbol)
        ]


def h_position_risk(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange = handler.server.exchange
    with exchange.lock:
        return exchange.position_risk(_account(account), params.get("symbol"))


def h_balance(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    with handler.server.exchange.lock:
        return handler.server.exchange.balances(_account(account))


def _time_filtered(rows: list[dict[str, Any]], params: dict[str, str], key: str = "time") -> list[dict[str, Any]]:
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    return [r for r in rows if (start is None or r[key] >= start) and (end is None or r[key] <= end)]


def h_user_trades(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    symbol = _symbol(params)
    from_id = _int_param(params, "fromId")
    limit = _int_param(params, "limit", 500) or 500
    with handler.server.exchange.lock:
        rows = [t for t in _account(account).trades if t["symbol"] == symbol]
    rows = [t for t in _time_filtered(rows, params) if from_id is None or t["id"] >= from_id]
    return rows[:limit] if from_id is not None else rows[-limit:]


def h_leverage(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange = handler.server.exchange
    leverage = _int_param(params, "leverage")
    if leverage is None or not 1 <= leverage <= 125:
        raise SimError(-4028, "Leverage is not valid.")
    with exchange.lock:
        symbol = exchange.symbol(_symbol(params)).symbol
        _account(account).leverage[symbol] = leverage
    cap = next(cap for _, lev, _, cap, _, _ in reversed(_brackets()) if lev >= leverage)
    return {"leverage": leverage, "maxNotionalValue": str(cap), "symbol": symbol}


def _brackets() -> list[tuple[int, int, int, int, str, str]]:
    from execution.aster.simulator.exchange import BRACKETS

    return BRACKETS


def h_margin_type(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    exchange, acct = handler.server.exchange, _account(account)
    margin_type = params.get("marginType", "")
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise SimError(-1130, "Invalid marginType.")
    with exchange.lock:
        symbol = exchange.symbol(_symbol(params)).symbol
        if acct.margin_type.get(symbol, "CROSSED") == margin_type:
            raise SimError(-4046, "No need to change margin type.")
        if acct.position(symbol).amount:
            raise SimError(-4048, "Margin type cannot be changed if there exists position.")
        acct.margin_type[symbol] = margin_type
    return {"code": 200, "msg": "success"}


def h_position_mode(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    acct = _account(account)
    if handler.command == "GET":
        return {"dualSidePosition": acct.hedge_mode}
    hedge = params.get("dualSidePosition", "").lower() == "true"
    with handler.server.exchange.lock:
        if hedge == acct.hedge_mode:
            raise SimError(-4059, "No need to change position side.")
        if any(p.amount for p in acct.positions.values()):
            raise SimError(-4068, "Position side cannot be changed if there exists position.")
        acct.hedge_mode = hedge
    return {"code": 200, "msg": "success"}


def h_leverage_bracket(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    with handler.server.exchange.lock:
        return handler.server.exchange.brackets(params.get("symbol"))


def h_commission_rate(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    from execution.aster.simulator.exchange import MAKER_RATE, TAKER_RATE

    symbol = handler.server.exchange.symbol(_symbol(params)).symbol
    return {"symbol": symbol, "makerCommissionRate": fmt(MAKER_RATE), "takerCommissionRate": fmt(TAKER_RATE)}


def h_income(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    symbol, income_type = params.get("symbol"), params.get("incomeType")
    limit = _int_param(params, "limit", 100) or 100
    with handler.server.exchange.lock:
        rows = [
            r
            for r in _account(account).income
            if (symbol is None or r["symbol"] == symbol) and (income_type is None or r["incomeType"] == income_type)
        ]
    return _time_filtered(rows, params)[-limit:]


def h_listen_key(handler: SimHandler, account: SimAccount | None, params: dict[str, str]) -> Any:
    """POST: the account's key (the active one, extended, or a new one); PUT: keepalive;
    DELETE: close it and its sockets. -1125 when the account has no live key."""
    keys, name = handler.server.listen_keys, _account(account).name
    if handler.command == "POST":
        return {"listenKey": keys.create(name)}
    if handler.command == "PUT":
        keys.keepalive(name, params.get("listenKey"))
        return {}
    key = keys.close(name, params.get("listenKey"))
    if handler.server.streams is not None:
        handler.server.streams.close_listen_key_sockets(key)
    return {}


PUBLIC = {
    ("GET", "ping"): Route(h_ping),
    ("GET", "time"): Route(h_time),
    ("GET", "exchangeInfo"): Route(h_exchange_info),
    ("GET", "depth"): Route(h_depth, weight=5),
    ("GET", "ticker/price"): Route(h_ticker_price),
    ("GET", "premiumIndex"): Route(h_premium_index),
    ("GET", "klines"): Route(h_klines, weight=2),
    ("GET", "markPriceKlines"): Route(h_mark_price_klines, weight=2),
    ("GET", "fundingRate"): Route(h_funding_rate),
}
SIGNED = {
    ("POST", "order"): Route(h_new_order),
    ("GET", "order"): Route(h_query_order),
    ("DELETE", "order"): Route(h_cancel_order),
    ("GET", "openOrders"): Route(h_open_orders),
    ("GET", "positionRisk"): Route(h_position_risk, weight=5),
    ("GET", "balance"): Route(h_balance, weight=5),
    ("GET", "userTrades"): Route(h_user_trades, weight=5),
    ("POST", "leverage"): Route(h_leverage),
    ("POST", "marginType"): Route(h_margin_type),
    ("POST", "positionSide/dual"): Route(h_position_mode),
    ("GET", "positionSide/dual"): Route(h_position_mode, weight=30),
    ("GET", "leverageBracket"): Route(h_leverage_bracket),
    ("GET", "commissionRate"): Route(h_commission_rate, weight=20),
    ("GET", "income"): Route(h_income, weight=30),
}
V1_VERSIONED = {"positionRisk": "v2", "balance": "v2"}


def _build_routes() -> dict[tuple[str, str], Route]:
    routes: dict[tuple[str, str], Route] = {}
    for (method, name), route in PUBLIC.items():
        routes[(method, f"/fapi/v1/{name}")] = route
        routes[(method, f"/fapi/v3/{name}")] = route
    for (method, name), route in SIGNED.items():
        v1_prefix = V1_VERSIONED.get(name, "v1")
        routes[(method, f"/fapi/{v1_prefix}/{name}")] = Route(route.handler, route.weight, "v1")
        routes[(method, f"/fapi/v3/{name}")] = Route(route.handler, route.weight, "v3")
    for method in ("POST", "PUT", "DELETE"):
        routes[(method, "/fapi/v1/listenKey")] = Route(h_listen_key, 1, "apikey")
        routes[(method, "/fapi/v3/listenKey")] = Route(h_listen_key, 1, "v3")
    return routes


ROUTES = _build_routes()


# ---------------------------------------------------------------------- admin handlers


def a_state(server: SimServer, data: dict[str, Any]) -> Any:
    exchange = server.exchange
    with exchange.lock:
        return {
            "symbols": {s.symbol: {"price": fmt(s.price), "mark": fmt(s.mark)} for s in exchange.symbols.values()},
            "accounts": {
                name: {
                    "balance": fmt(acct.balance),
                    "positions": {
                        sym: {"amount": fmt(p.amount), "entry": fmt(p.entry)}
                        for sym, p in acct.positions.items()
                        if p.amount
                    },
                    "open_orders": [o.as_json() for o in acct.orders.values() if o.is_open],
                }
                for name, acct in exchange.accounts.items()
            },
            "faults": asdict(server.faults),
        }


def a_price(server: SimServer, data: dict[str, Any]) -> Any:
    premium = Decimal(str(data["mark_premium"])) if "mark_premium" in data else None
    server.exchange.set_price(str(data["symbol"]), Decimal(str(data["price"])), mark_premium=premium)
    return {"ok": True}


def a_step(server: SimServer, data: dict[str, Any]) -> Any:
    for _ in range(int(data.get("steps", 1))):
        server.exchange.step()
    return {"ok": True}


def a_faults(server: SimServer, data: dict[str, Any]) -> Any:
    """Switches by name; `rules` (a list) replaces the aimed rules ([] clears them); `aim` (one
    rule or a list) adds to them. Everything is checked before anything changes."""
    names = {f.name for f in fields(Faults)} | {"aim"}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown faults: {sorted(unknown)}")
    switches = {name: value for name, value in data.items() if name not in ("rules", "aim")}
    converted = {name: type(getattr(server.faults, name))(value) for name, value in switches.items()}
    replacing = [_rule(item) for item in _as_list(data["rules"], "rules")] if "rules" in data else None
    adding = [_rule(item) for item in _as_list(data["aim"], "aim")] if "aim" in data else []
    with server.fault_lock:
        for name, value in converted.items():
            setattr(server.faults, name, value)
    if replacing is not None:
        server.faults.clear_rules()
    for rule in [*(replacing or []), *adding]:
        server.faults.add_rule(rule)
    return asdict(server.faults)


def _as_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a rule or a list of rules")
    return value


def _rule(item: Any) -> FaultRule:
    if not isinstance(item, dict):
        raise ValueError("a fault rule is an object with a kind")
    return FaultRule.from_json(item)


def a_accounts(server: SimServer, data: dict[str, Any]) -> Any:
    allowed = {"api_key", "api_secret", "user", "signer"}
    extra = {k: str(v) for k, v in data.items() if k in allowed}
    if "balance" in data:
        extra["balance"] = Decimal(str(data["balance"]))  # type: ignore[assignment]
    server.exchange.add_account(str(data["name"]), **extra)
    return {"ok": True}


def a_orders(server: SimServer, data: dict[str, Any]) -> Any:
    """Place an order for an account directly, as a person on the exchange's website would."""
    exchange = server.exchange
    account = exchange.accounts[str(data.pop("account"))]
    order = exchange.place_order(account, {k: str(v) for k, v in data.items()})
    return order.as_json()


def a_cancel(server: SimServer, data: dict[str, Any]) -> Any:
    """Cancel an account's order directly, as a person on the exchange's website would."""
    exchange = server.exchange
    account = exchange.accounts[str(data["account"])]
    order_id, client_id = data.get("orderId"), data.get("origClientOrderId")
    if order_id is None and client_id is None:
        raise ValueError("orderId or origClientOrderId is required")
    order = exchange.cancel_order(
        account,
        order_id=None if order_id is None else str(order_id),
        client_order_id=None if client_id is None else str(client_id),
    )
    return order.as_json()


def a_split_fills(server: SimServer, data: dict[str, Any]) -> Any:
    server.exchange.split_next_fills(str(data["account"]), parts=int(data["parts"]), fills=int(data.get("fills", 1)))
    return {"ok": True}


def _streams(server: SimServer) -> SimStreams:
    if server.streams is None:
        raise ValueError("this simulator serves no WebSocket streams")
    return server.streams


def _done(control: Callable[..., None], *args: Any) -> dict[str, bool]:
    control(*args)
    return {"ok": True}


def _seconds(data: dict[str, Any]) -> float:
    seconds = data["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds must be a number")
    return float(seconds)


ADMIN_ROUTES: dict[tuple[str, str], Callable[[SimServer, dict[str, Any]], Any]] = {
    ("POST", "/_sim/cancel"): a_cancel,
    ("POST", "/_sim/split_fills"): a_split_fills,
    ("GET", "/_sim/ws/state"): lambda server, data: _streams(server).state(),
    ("POST", "/_sim/ws/drop"): lambda server, data: {"dropped": _streams(server).drop_all()},
    ("POST", "/_sim/ws/pause"): lambda server, data: _done(_streams(server).pause),
    ("POST", "/_sim/ws/resume"): lambda server, data: _done(_streams(server).resume),
    ("POST", "/_sim/ws/close_older"): lambda server, data: {
        "closed": _streams(server).close_older_than(_seconds(data))
    },
    ("POST", "/_sim/ws/inject"): lambda server, data: {"sent": _streams(server).inject(str(data["text"]))},
    ("POST", "/_sim/ws/hold"): lambda server, data: _done(_streams(server).hold_events, str(data["account"])),
    ("POST", "/_sim/ws/release"): lambda server, data: {
        "released": _streams(server).release_events(str(data["account"]))
    },
    ("POST", "/_sim/ws/expire_key"): lambda server, data: _done(
        _streams(server).expire_listen_key, str(data["account"])
    ),
    ("POST", "/_sim/ws/drop_user"): lambda server, data: {
        "dropped": _streams(server).drop_user_sockets(str(data["account"]))
    },
    ("GET", "/_sim/state"): a_state,
    ("POST", "/_sim/price"): a_price,
    ("POST", "/_sim/step"): a_step,
    ("POST", "/_sim/faults"): a_faults,
    ("POST", "/_sim/accounts"): a_accounts,
    ("POST", "/_sim/orders"): a_orders,
}


class AsterSimulator:
    """Runs a SimServer on a background thread; optionally moves prices every `tick_seconds`."""

    def __init__(
        self,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_seconds: float | None = None,
        exchange: SimExchange | None = None,
        request_log_size: int = REQUEST_LOG_SIZE,
        ws_port: int | None = 0,
        listen_key_seconds: float = DEFAULT_VALIDITY_SECONDS,
    ) -> None:
        """`ws_port`: the WebSocket server's port (0: any free one; None: no WebSocket server).
        `listen_key_seconds`: how long a listenKey lives without a keepalive (60 min)."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulator binds to loopback only")
        if ws_port is not None and not 0 <= ws_port <= 65535:
            raise ValueError(f"ws_port must be 0..65535, got {ws_port}")
        self.exchange = exchange or SimExchange(seed=seed)
        self.server = SimServer(self.exchange, (host, port), request_log_size=request_log_size)
        self.server.listen_keys = ListenKeys(validity_seconds=listen_key_seconds, clock=self.exchange.clock)
        if ws_port is not None:
            try:
                self.server.streams = SimStreams(self.exchange, self.server.listen_keys, host=host, port=ws_port)
            except OSError:
                self.server.server_close()
                raise
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>`: append `/ws/<stream>`, `/stream?streams=..`, `/ws/<listenKey>`."""
        return self.streams.url

    @property
    def streams(self) -> SimStreams:
        if self.server.streams is None:
            raise RuntimeError("this simulator was made without a WebSocket server (ws_port=None)")
        return self.server.streams

    @property
    def listen_keys(self) -> ListenKeys:
        return self.server.listen_keys

    @property
    def faults(self) -> Faults:
        return self.server.faults

    # WebSocket faults and controls (streams.py explains each).

    def drop_sockets(self) -> int:
        return self.streams.drop_all()

    def pause_streams(self) -> None:
        self.streams.pause()

    def resume_streams(self) -> None:
        self.streams.resume()

    def close_sockets_older_than(self, seconds: float) -> int:
        return self.streams.close_older_than(seconds)

    def inject_frame(self, text: str) -> int:
        return self.streams.inject(text)

    def hold_events(self, account: str) -> None:
        self.streams.hold_events(account)

    def release_events(self, account: str) -> int:
        return self.streams.release_events(account)

    def expire_listen_key(self, account: str) -> None:
        self.streams.expire_listen_key(account)

    def drop_user_sockets(self, account: str) -> int:
        return self.streams.drop_user_sockets(account)

    def split_next_fills(self, account: str, *, parts: int, fills: int = 1) -> None:
        self.exchange.split_next_fills(account, parts=parts, fills=fills)

    def start(self) -> AsterSimulator:
        serve = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="aster-sim", daemon=True
        )
        serve.start()
        self._threads.append(serve)
        if self.server.streams is not None:
            self.server.streams.start()
        if self.tick_seconds:
            ticker = threading.Thread(target=self._tick, name="aster-sim-ticker", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        return self

    def _tick(self) -> None:
        # Fixed rate: a step every tick_seconds, however long a step takes (the streams push
        # one frame per step when the tick matches their cadence).
        assert self.tick_seconds
        due = time.monotonic() + self.tick_seconds
        while not self._stop.wait(max(due - time.monotonic(), 0.0)):
            self.exchange.step()
            due = max(due + self.tick_seconds, time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        if self.server.streams is not None:
            self.server.streams.stop()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> AsterSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
