"""The simulator's WebSocket face: market streams and user-data streams (ASTER_WS.md §1-2).

One asyncio event loop on a background thread serves every socket (websockets 15). The
exchange changes state in sync threads under `exchange.lock`; its listeners only hand the
change to the loop (`loop.call_soon_threadsafe`), so a slow socket never holds the exchange.

Paths:
- `/ws/<stream>` raw (bare payloads), `/ws` (nothing yet: SUBSCRIBE later);
- `/stream?streams=<a>/<b>` combined (`{"stream": .., "data": ..}`), `/stream` (nothing yet);
- `/ws/<listenKey>` a user-data socket (the key must be live, else the handshake gets HTTP 400
  with `{"code": -1125, ...}`); a listenKey is served on this path only, not in `/stream`.

Market streams (symbol lowercase in the name; the payload's `s` is uppercase):
- `<symbol>@markPrice` every 3 s, `<symbol>@markPrice@1s` every 1 s;
- `!markPrice@arr` every 3 s, `!markPrice@arr@1s` every 1 s: a JSON array of every symbol,
  built once per push and sent as the same text to every subscriber;
- `<symbol>@bookTicker`: on every price change;
- `<symbol>@aggTrade`: a synthetic aggTrade at the new last price on every last-price change.
Every mark stream is pushed at once on every price change (set_price, step, /_sim/price) and
otherwise on its schedule: a scheduled push is skipped when the stream was pushed within its
cadence, so a symbol that moves every second gets one frame a second, not two.
Event times `E` are taken when the frame is built, so they never go backwards on a stream.

Control messages (§1.3): SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY,
GET_PROPERTY (`combined`) with `{"result": .., "id": ..}` acks; errors `{"code": 0|1|2|3,
"msg": .., "id": ..}` (0 unknown property, 1 wrong value type, 2 malformed request, 3 bad
JSON). An unknown stream name (bad form, or a symbol the exchange does not list) is refused
with code 2 and nothing of that request is subscribed: stricter than Binance, which tends to
accept any name and send nothing, so that a client's typo shows at once. The same names in a
URL refuse the handshake (HTTP 400). At most 200 streams per connection (code 2 past it, HTTP
400 in a URL), at most 10 incoming messages per second (past it the connection is closed, 1008).
Pings every 5 min, 15 min to answer; connections close (1001) after 24 h.

Faults and controls (Python methods here, JSON POST under /_sim/ws/ in server.py):
- `drop_all()` (`/_sim/ws/drop`): abort every socket, market and user-data, without a close frame;
- `pause()` / `resume()` (`/_sim/ws/pause`, `/_sim/ws/resume`): stop pushing market data while
  the sockets stay open and answer pings and control messages (a stale stream); pushes missed
  meanwhile are not replayed;
- `close_older_than(seconds)` (`/_sim/ws/close_older {"seconds": N}`): close (1001) every
  connection open longer than N seconds (the 24 h rollover, made short);
- `inject(text)` (`/_sim/ws/inject {"text": ".."}`): send a raw text frame to every market socket;
- per account: `hold_events(account)` / `release_events(account)` (`/_sim/ws/hold`,
  `/_sim/ws/release {"account": name}`): keep its user-data events back, then send them in
  order; `expire_listen_key(account)` (`/_sim/ws/expire_key`): its key lapses now
  (`listenKeyExpired` on its sockets, then nothing more on them); `drop_user_sockets(account)`
  (`/_sim/ws/drop_user`): abort its user-data sockets;
- `state()` (`GET /_sim/ws/state`): socket counts and subscriptions.
A user-data socket receives its account's events while its key is live. After
`listenKeyExpired` the socket stays open but gets nothing more. Deleting the key (REST DELETE)
closes its sockets (1000).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from execution.aster.simulator.exchange import PriceSnapshot, SimExchange
from execution.aster.simulator.listen_keys import ListenKeys

logger = logging.getLogger(__name__)
# websockets logs every connection at INFO: noise for a simulator with hundreds of sockets.
connection_logger = logging.getLogger(f"{__name__}.connections")
connection_logger.setLevel(logging.WARNING)

MAX_STREAMS = 200
MAX_MESSAGES_PER_SECOND = 10
MAX_CONNECTION_SECONDS = 24 * 3600.0
PING_INTERVAL_SECONDS = 300.0
PING_TIMEOUT_SECONDS = 900.0
TICK_SECONDS = 0.05  # the scheduler's resolution: cadences, key expiry
# After a push on a price change, the schedule waits a cadence and this much more: prices that
# move every cadence (the simulator's own ticker) then give one frame per cadence, not two.
CHANGE_GRACE_SECONDS = 0.25
CONTROL_TIMEOUT_SECONDS = 5.0
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
ALL_MARKS = {"!markPrice@arr": 3.0, "!markPrice@arr@1s": 1.0}
SYMBOL_STREAM_RE = re.compile(r"^([a-z0-9]+)@(markPrice|markPrice@1s|bookTicker|aggTrade)$")
SYMBOL_CADENCE = {"markPrice": 3.0, "markPrice@1s": 1.0}  # bookTicker, aggTrade: on change only
LISTEN_KEY_RE = re.compile(r"^[A-Za-z0-9]{16,128}$")

T = TypeVar("T")


class RequestError(Exception):
    """A control message the server answers with `{"code": .., "msg": ..}`."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass(eq=False)
class MarketSocket:
    conn: ServerConnection
    combined: bool
    opened: float = field(default_factory=time.monotonic)
    streams: set[str] = field(default_factory=set)
    recent_messages: deque[float] = field(default_factory=deque)


@dataclass(eq=False)
class UserSocket:
    conn: ServerConnection
    account: str
    key: str
    opened: float = field(default_factory=time.monotonic)


@functools.lru_cache(maxsize=4096)
def _schedule_of(stream: str) -> tuple[float | None, str | None]:
    """(cadence in seconds or None when pushed on change only, uppercase symbol or None for all)."""
    if stream in ALL_MARKS:
        return ALL_MARKS[stream], None
    match = SYMBOL_STREAM_RE.match(stream)
    assert match is not None  # only known streams are ever subscribed
    return SYMBOL_CADENCE.get(match.group(2)), match.group(1).upper()


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


class SimStreams:
    """The WebSocket server. Bound at construction (so `url` is known and a busy port fails
    early); serving from `start()` to `stop()`."""

    def __init__(
        self,
        exchange: SimExchange,
        listen_keys: ListenKeys,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_streams: int = MAX_STREAMS,
        max_messages_per_second: int = MAX_MESSAGES_PER_SECOND,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
    ) -> None:
        if max_streams < 1 or max_messages_per_second < 1 or max_connection_seconds <= 0:
            raise ValueError("max_streams, max_messages_per_second and max_connection_seconds must be positive")
        self.exchange = exchange
        self.listen_keys = listen_keys
        self.max_streams = max_streams
        self.max_messages_per_second = max_messages_per_second
        self.max_connection_seconds = max_connection_seconds
        self._sock = socket.create_server((host, port))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._accepting = False
        # Loop-thread state from here on (touched only on the loop).
        self._market: set[MarketSocket] = set()
        self._subscribers: dict[str, set[MarketSocket]] = {}
        self._user_by_key: dict[str, set[UserSocket]] = {}
        self._held: dict[str, list[dict[str, Any]]] = {}
        self._prices: dict[str, PriceSnapshot] = {}
        self._changed: dict[str, PriceSnapshot | None] = {}
        self._flush_pending = False
        self._paused = False
        self._next_due: dict[str, float] = {}  # stream -> monotonic time of its next scheduled push
        self._book_update_id = 0
        self._agg_trade_id = 0
        self.frames_sent = 0  # data frames, counted once per subscriber

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"ws://{host}:{port}"

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="aster-sim-ws", daemon=True)
        self._thread.start()
        if not ready.wait(CONTROL_TIMEOUT_SECONDS):
            raise RuntimeError("the simulator's WebSocket server did not start")
        # Prices as they are now, then every change through the listeners: both under the
        # exchange's lock, so the loop receives the snapshot before any later change.
        with self.exchange.lock:
            self.exchange.price_listeners.append(self._price_listener)
            self.exchange.event_listeners.append(self._event_listener)
            self._hand_over(self._on_prices, self.exchange.price_snapshots())

    def stop(self) -> None:
        self._accepting = False
        with self.exchange.lock:
            for listeners, listener in (
                (self.exchange.price_listeners, self._price_listener),
                (self.exchange.event_listeners, self._event_listener),
            ):
                if listener in listeners:
                    listeners.remove(listener)  # type: ignore[arg-type]
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and loop.is_running():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(CONTROL_TIMEOUT_SECONDS * 2)
        self._sock.close()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        async with serve(
            self._handle,
            sock=self._sock,
            process_request=self._check_request,
            compression=None,  # as the bench measures CPU: no per-message deflate
            ping_interval=PING_INTERVAL_SECONDS,
            ping_timeout=PING_TIMEOUT_SECONDS,
            close_timeout=1,
            max_size=1 << 20,
            logger=connection_logger,
        ) as server:
            ticker = asyncio.create_task(self._tick())
            self._accepting = True
            ready.set()
            await self._stopped.wait()
            ticker.cancel()
            await self._close_all(server)

    async def _close_all(self, server: Server) -> None:
        server.close(close_connections=False)
        for conn in list(server.connections):
            conn.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), CONTROL_TIMEOUT_SECONDS)

    def _call(self, function: Callable[[], T]) -> T:
        """Run `function` on the loop thread and wait for its result (controls from other threads)."""
        loop = self._loop
        if loop is None or not self._accepting:
            raise RuntimeError("the simulator's WebSocket server is not running")
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(function())
            except Exception as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(CONTROL_TIMEOUT_SECONDS)

    # ------------------------------------------------------------------ exchange listeners (exchange threads)

    def _price_listener(self, snapshots: list[PriceSnapshot]) -> None:
        self._hand_over(self._on_prices, snapshots)

    def _event_listener(self, account: str, event: dict[str, Any]) -> None:
        self._hand_over(self._on_user_event, account, event)

    def _hand_over(self, function: Callable[..., None], *args: Any) -> None:
        # Called under exchange.lock: never wait here. call_soon_threadsafe keeps the order in
        # which the exchange produced the changes (they are produced under one lock).
        loop = self._loop
        if loop is None or not self._accepting:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (stop)
            loop.call_soon_threadsafe(function, *args)

    # ------------------------------------------------------------------ handshake and sockets

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            self._route(request.path)
        except RequestError as exc:
            status = HTTPStatus.NOT_FOUND if exc.code == 404 else HTTPStatus.BAD_REQUEST
            return connection.respond(status, _dumps({"code": exc.code, "msg": exc.msg}) + "\n")
        return None

    def _route(self, target: str) -> tuple[str, Any]:
        """("market", (combined, streams)) or ("user", (account, key)); RequestError otherwise."""
        split = urlsplit(target)
        path = split.path.rstrip("/")
        if path == "/stream":
            raw = parse_qs(split.query).get("streams", [""])[0]
            streams = [s for s in raw.split("/") if s]
            self._check_streams(streams, already=0)
            return "market", (True, streams)
        if path == "/ws":
            return "market", (False, [])
        if path.startswith("/ws/"):
            name = path[len("/ws/") :]
            if "@" in name or name.startswith("!"):
                self._check_streams([name], already=0)
                return "market", (False, [name])
            account = self.listen_keys.account_of(name) if LISTEN_KEY_RE.match(name) else None
            if account is None:
                raise RequestError(-1125, "This listenKey does not exist.")
            return "user", (account, name)
        raise RequestError(404, f"unknown path {path}")

    def _check_streams(self, streams: list[str], *, already: int) -> None:
        unknown = [s for s in streams if not self._known_stream(s)]
        if unknown:
            raise RequestError(2, f"Invalid request: unknown stream(s) {', '.join(unknown[:5])}")
        if already + len(set(streams)) > self.max_streams:
            raise RequestError(2, f"Invalid request: too many streams (at most {self.max_streams} per connection)")

    def _known_stream(self, stream: str) -> bool:
        if stream in ALL_MARKS:
            return True
        match = SYMBOL_STREAM_RE.match(stream)
        return match is not None and match.group(1).upper() in self.exchange.symbols

    async def _handle(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        try:
            kind, facts = self._route(conn.request.path)
        except RequestError as exc:  # e.g. the key lapsed between handshake and now
            await conn.close(1008, exc.msg)
            return
        if kind == "user":
            await self._serve_user(conn, *facts)
        else:
            await self._serve_market(conn, *facts)

    async def _serve_market(self, conn: ServerConnection, combined: bool, streams: list[str]) -> None:
        ms = MarketSocket(conn=conn, combined=combined)
        self._market.add(ms)
        self._subscribe(ms, streams)
        try:
            async for message in conn:
                if self._too_many_messages(ms):
                    await conn.close(1008, "Too many requests")
                    break
                text = message if isinstance(message, str) else message.decode(errors="replace")
                await conn.send(_dumps(self._control(ms, text)))
        except ConnectionClosed:
            pass
        finally:
            self._market.discard(ms)
            self._unsubscribe(ms, list(ms.streams))

    async def _serve_user(self, conn: ServerConnection, account: str, key: str) -> None:
        us = UserSocket(conn=conn, account=account, key=key)
        self._user_by_key.setdefault(key, set()).add(us)
        try:
            async for _ in conn:  # nothing a client sends on a user-data socket means anything
                pass
        except ConnectionClosed:
            pass
        finally:
            sockets = self._user_by_key.get(key)
            if sockets is not None:
                sockets.discard(us)
                if not sockets:
                    del self._user_by_key[key]

    def _too_many_messages(self, ms: MarketSocket) -> bool:
        now = time.monotonic()
        ms.recent_messages.append(now)
        while ms.recent_messages and ms.recent_messages[0] <= now - 1.0:
            ms.recent_messages.popleft()
        return len(ms.recent_messages) > self.max_messages_per_second

    def _subscribe(self, ms: MarketSocket, streams: Iterable[str]) -> None:
        for stream in streams:
            ms.streams.add(stream)
            self._subscribers.setdefault(stream, set()).add(ms)

    def _unsubscribe(self, ms: MarketSocket, streams: Iterable[str]) -> None:
        for stream in streams:
            ms.streams.discard(stream)
            subscribers = self._subscribers.get(stream)
            if subscribers is not None:
                subscribers.discard(ms)
                if not subscribers:
                    del self._subscribers[stream]

    # ------------------------------------------------------------------ control messages (§1.3)

    def _control(self, ms: MarketSocket, text: str) -> dict[str, Any]:
        try:
            request = json.loads(text)
        except ValueError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}"}
        request_id = request.get("id") if isinstance(request, dict) else None
        valid_id = isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0
        try:
            if not isinstance(request, dict):
                raise RequestError(2, "Invalid request: expected a JSON object")
            if not valid_id:
                raise RequestError(2, "Invalid request: request ID must be an unsigned integer")
            return {"result": self._apply(ms, request), "id": request_id}
        except RequestError as exc:
            error: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
            if valid_id:
                error["id"] = request_id
            return error

    def _apply(self, ms: MarketSocket, request: dict[str, Any]) -> Any:
        method = request.get("method")
        if method is None:
            raise RequestError(2, "Invalid request: missing field `method`")
        if method not in METHODS:
            raise RequestError(2, f"Invalid request: unknown method {method!r}; one of {', '.join(METHODS)}")
        params = request.get("params", [])
        if not isinstance(params, list):
            raise RequestError(2, "Invalid request: params must be an array")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) for p in params):
                raise RequestError(2, "Invalid request: stream names must be strings")
            if method == "SUBSCRIBE":
                self._check_streams([p for p in params if p not in ms.streams], already=len(ms.streams))
                self._subscribe(ms, params)
            else:
                self._unsubscribe(ms, params)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise RequestError(2, "Invalid request: too many parameters")
            return sorted(ms.streams)
        expected = 2 if method == "SET_PROPERTY" else 1
        if len(params) > expected:
            raise RequestError(2, "Invalid request: too many parameters")
        if len(params) < expected:
            raise RequestError(2, "Invalid request: missing parameters")
        if not isinstance(params[0], str):
            raise RequestError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise RequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return ms.combined
        if not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean")
        ms.combined = params[1]
        return None

    # ------------------------------------------------------------------ market pushes (loop thread)

    def _on_prices(self, snapshots: list[PriceSnapshot]) -> None:
        for snapshot in snapshots:
            previous = self._prices.get(snapshot.symbol)
            self._prices[snapshot.symbol] = snapshot
            self._changed.setdefault(snapshot.symbol, previous)
        if not self._flush_pending:
            # Changes queued back to back (a step, a burst of set_price) go out as one push.
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush_changes)

    def _flush_changes(self) -> None:
        changed, self._changed, self._flush_pending = self._changed, {}, False
        if self._paused or not changed:
            return
        event_ms = self.exchange.now_ms()
        marks: dict[str, str] = {}
        for symbol, previous in changed.items():
            snapshot = self._prices[symbol]
            name = symbol.lower()
            for suffix in SYMBOL_CADENCE:
                stream = f"{name}@{suffix}"
                if stream in self._subscribers:
                    self._publish(stream, self._mark_text(snapshot, event_ms, marks))
            if f"{name}@bookTicker" in self._subscribers:
                self._publish(f"{name}@bookTicker", self._book_ticker_text(snapshot, event_ms))
            if f"{name}@aggTrade" in self._subscribers and (previous is None or previous.price != snapshot.price):
                falling = previous is not None and snapshot.price < previous.price
                self._publish(f"{name}@aggTrade", self._agg_trade_text(snapshot, event_ms, falling))
        for stream in ALL_MARKS:
            if stream in self._subscribers:
                self._publish(stream, self._all_marks_text(event_ms, marks))

    def _push_scheduled(self) -> None:
        if self._paused:
            return
        now = time.monotonic()
        event_ms = self.exchange.now_ms()
        marks: dict[str, str] = {}
        for stream in list(self._subscribers):
            cadence, symbol = _schedule_of(stream)
            was_due = self._next_due.get(stream, 0.0)
            if cadence is None or now < was_due:
                continue
            if symbol is None:
                self._publish(stream, self._all_marks_text(event_ms, marks))
            elif symbol in self._prices:
                self._publish(stream, self._mark_text(self._prices[symbol], event_ms, marks))
            # Fixed rate: the next slot is a cadence after this one was due, not after the tick
            # that noticed it (unless the schedule fell behind by a whole cadence).
            due = was_due + cadence
            self._next_due[stream] = due if due > now else now + cadence

    def _publish(self, stream: str, text: str) -> None:
        """Send one payload text to every subscriber of `stream`, serialised once."""
        subscribers = self._subscribers.get(stream)
        if not subscribers:
            return
        cadence, _ = _schedule_of(stream)
        if cadence is not None:  # the scheduled push moves this later again in _push_scheduled
            self._next_due[stream] = time.monotonic() + cadence + CHANGE_GRACE_SECONDS
        raw = [s.conn for s in subscribers if not s.combined]
        wrapped = [s.conn for s in subscribers if s.combined]
        if raw:
            broadcast(raw, text)
        if wrapped:
            broadcast(wrapped, f'{{"stream":"{stream}","data":{text}}}')
        self.frames_sent += len(subscribers)

    @staticmethod
    def _mark_text(snapshot: PriceSnapshot, event_ms: int, memo: dict[str, str]) -> str:
        text = memo.get(snapshot.symbol)
        if text is None:
            text = memo[snapshot.symbol] = _dumps(
                {
                    "e": "markPriceUpdate",
                    "E": event_ms,
                    "s": snapshot.symbol,
                    "p": _fmt(snapshot.mark),
                    "i": _fmt(snapshot.price),
                    "P": _fmt(snapshot.mark),
                    "r": _fmt(snapshot.funding_rate),
                    "T": snapshot.next_funding_ms,
                }
            )
        return text

    def _all_marks_text(self, event_ms: int, memo: dict[str, str]) -> str:
        return "[" + ",".join(self._mark_text(s, event_ms, memo) for s in self._prices.values()) + "]"

    def _book_ticker_text(self, snapshot: PriceSnapshot, event_ms: int) -> str:
        self._book_update_id += 1
        return _dumps(
            {
                "e": "bookTicker",
                "u": self._book_update_id,
                "E": event_ms,
                "T": event_ms,
                "s": snapshot.symbol,
                "b": _fmt(snapshot.bid),
                "B": _fmt(snapshot.bid_qty),
                "a": _fmt(snapshot.ask),
                "A": _fmt(snapshot.ask_qty),
            }
        )

    def _agg_trade_text(self, snapshot: PriceSnapshot, event_ms: int, falling: bool) -> str:
        self._agg_trade_id += 1
        return _dumps(
            {
                "e": "aggTrade",
                "E": event_ms,
                "s": snapshot.symbol,
                "a": self._agg_trade_id,
                "p": _fmt(snapshot.price),
                "q": _fmt(snapshot.min_qty),
                "f": self._agg_trade_id,
                "l": self._agg_trade_id,
                "T": event_ms,
                "m": falling,  # a sell into the bid moved the price down: the buyer was the maker
            }
        )

    async def _tick(self) -> None:
        last_age_check = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self._push_scheduled()
                self._expire_keys()
                if time.monotonic() - last_age_check >= 1.0:
                    last_age_check = time.monotonic()
                    self._close_older(self.max_connection_seconds)
            except Exception:  # a bug here must not stop every schedule
                logger.exception("simulator stream tick failed")

    # ------------------------------------------------------------------ user-data (loop thread)

    def _on_user_event(self, account: str, event: dict[str, Any]) -> None:
        held = self._held.get(account)
        if held is not None:
            held.append(event)
            return
        self._deliver(account, [event])

    def _deliver(self, account: str, events: list[dict[str, Any]]) -> None:
        key = self.listen_keys.key_of(account)
        sockets = self._user_by_key.get(key) if key else None
        if not sockets:
            return  # nobody listening: the event is gone, as on the exchange
        conns = [s.conn for s in sockets]
        for event in events:
            broadcast(conns, _dumps(event))
            self.frames_sent += len(conns)

    def _expire_keys(self) -> None:
        for entry in self.listen_keys.expire_due():
            sockets = self._user_by_key.pop(entry.key, set())
            if sockets:
                text = _dumps({"e": "listenKeyExpired", "E": self.exchange.now_ms()})
                broadcast([s.conn for s in sockets], text)
            # The sockets stay open but are no longer registered: nothing more reaches them.

    def _close_older(self, seconds: float) -> int:
        cutoff = time.monotonic() - seconds
        old = [s.conn for s in self._market if s.opened <= cutoff]
        old += [s.conn for sockets in self._user_by_key.values() for s in sockets if s.opened <= cutoff]
        for conn in old:
            asyncio.get_running_loop().create_task(conn.close(1001, "connection too old"))
        return len(old)

    # ------------------------------------------------------------------ controls (any thread)

    def drop_all(self) -> int:
        """Abort every socket (market and user-data) without a close frame; returns how many."""

        def drop() -> int:
            conns = [s.conn for s in self._market]
            conns += [s.conn for sockets in self._user_by_key.values() for s in sockets]
            for conn in conns:
                conn.transport.abort()
            return len(conns)

        return self._call(drop)

    def pause(self) -> None:
        """Stop pushing market data; the sockets stay open (a stale stream)."""
        self._call(lambda: setattr(self, "_paused", True))

    def resume(self) -> None:
        self._call(lambda: setattr(self, "_paused", False))

    def close_older_than(self, seconds: float) -> int:
        """Close (1001) every connection open for longer than `seconds`; returns how many."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        return self._call(lambda: self._close_older(seconds))

    def inject(self, text: str) -> int:
        """Send `text` as it is, as one text frame, to every market socket; returns how many."""

        def send() -> int:
            conns = [s.conn for s in self._market]
            broadcast(conns, text)
            return len(conns)

        return self._call(send)

    def hold_events(self, account: str) -> None:
        """Keep the account's user-data events back until release_events."""
        self._known_account(account)

        def hold() -> None:
            self._held.setdefault(account, [])

        self._call(hold)

    def release_events(self, account: str) -> int:
        """Send the held events in order and stop holding; returns how many were held."""
        self._known_account(account)

        def release() -> int:
            events = self._held.pop(account, [])
            self._deliver(account, events)
            return len(events)

        return self._call(release)

    def expire_listen_key(self, account: str) -> None:
        """The account's listenKey lapses now: `listenKeyExpired` on its sockets, then silence."""
        self._known_account(account)
        self.listen_keys.expire_now(account)
        self._call(self._expire_keys)

    def close_listen_key_sockets(self, key: str) -> int:
        """Close (1000) the sockets of a deleted key."""

        def close() -> int:
            sockets = self._user_by_key.pop(key, set())
            for s in sockets:
                asyncio.get_running_loop().create_task(s.conn.close(1000, "listenKey closed"))
            return len(sockets)

        return self._call(close)

    def drop_user_sockets(self, account: str) -> int:
        """Abort the account's user-data sockets without a close frame; returns how many."""
        self._known_account(account)

        def drop() -> int:
            sockets = [s for group in self._user_by_key.values() for s in group if s.account == account]
            for s in sockets:
                s.conn.transport.abort()
            return len(sockets)

        return self._call(drop)

    def state(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            return {
                "url": self.url,
                "paused": self._paused,
                "market_sockets": len(self._market),
                "user_sockets": sum(len(group) for group in self._user_by_key.values()),
                "subscriptions": {stream: len(subs) for stream, subs in sorted(self._subscribers.items())},
                "held": {account: len(events) for account, events in self._held.items()},
                "frames_sent": self.frames_sent,
            }

        return self._call(read)

    def _known_account(self, account: str) -> None:
        if account not in self.exchange.accounts:
            raise KeyError(account)
