"""One logical WebSocket stream that stays connected: the reusable connection of `aster_stream`.

Django-free (imports nothing of ours). A `StreamConnection` keeps one socket open to a URL and
hands every data frame to `on_frame(text, received_at)`:

- keepalive: websockets answers the exchange's pings (every 5 min; it drops a socket after 15 min
  without a pong) and sends its own pings every `ping_interval`;
- reconnect with exponential backoff and full jitter (`backoff_initial` doubling up to
  `backoff_max`), reset once a connection has stayed up for `healthy_seconds`;
- a reconnect when no frame arrived for `idle_seconds` (None: never, e.g. a quiet user stream);
- rollover before `rollover_seconds` (the exchange closes a socket after 24 h) with no gap: the
  successor is opened, subscribed and `on_connect`-ed while the old one still delivers; then the
  old one is retired and closed. Frames seen on both during the overlap are delivered twice;
  consumers drop what is not newer;
- the stream set (`subscribe` / `unsubscribe`) is re-sent on every (re)connect; streams named in
  the URL's `streams=` query count as subscribed;
- the exchange's limits: at most `max_streams` (200) streams per connection and a paced
  outgoing message rate (`messages_per_second`, below the exchange's 10/s so pongs have room).

`on_connect` (async) is awaited on every new socket before any of its frames is handed on; the
frames that arrive meanwhile are held and delivered in order afterwards. Frames are delivered
one at a time (a lock), so `on_frame` never runs twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

MAX_STREAMS_PER_CONNECTION = 200  # ASTER_WS.md §1.2
EXCHANGE_MESSAGES_PER_SECOND = 10  # ASTER_WS.md §1.2: more disconnects (and repeated offenders are banned)

FrameHandler = Callable[[str, datetime], Awaitable[None] | None]
ConnectHandler = Callable[[], Awaitable[None]]
UrlSource = str | Callable[[], Awaitable[str]]


class SubscriptionError(Exception):
    """A SUBSCRIBE/UNSUBSCRIBE the connection refused to send, or the exchange refused."""


class SubscriptionRefused(SubscriptionError):
    """The exchange answered a SUBSCRIBE/UNSUBSCRIBE with an error."""


class ConnectionClosing(Exception):
    """The connection was closed by its owner while an operation waited."""


@dataclass
class ConnectionStats:
    """Counters of one logical connection (all its sockets); read by the status recorder."""

    connects: int = 0  # sockets opened and made current (the first, reconnects, rollovers)
    reconnects: int = 0  # sockets replaced after a failure, a server close or an idle timeout
    rollovers: int = 0
    idle_reconnects: int = 0
    failed_attempts: int = 0
    frames: int = 0  # data frames handed on
    connected: bool = False
    connected_at: datetime | None = None
    last_frame_at: datetime | None = None
    last_error: str = ""


@dataclass(eq=False)
class _Socket:
    """One WebSocket of the logical connection."""

    ws: ClientConnection
    opened_at: float
    subscribed: set[str]
    last_frame: float
    reader: asyncio.Task[None] | None = None
    held: deque[tuple[str, datetime]] = field(default_factory=deque)
    active: bool = False
    retired: bool = False
    acks: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sent: deque[float] = field(default_factory=deque)  # send times within the last second
    lost_reason: str = ""  # set when the owner asked for a reconnect


class StreamConnection:
    def __init__(
        self,
        *,
        name: str,
        url: UrlSource,
        on_frame: FrameHandler,
        on_connect: ConnectHandler | None = None,
        streams: Iterable[str] = (),
        idle_seconds: float | None = 10.0,
        rollover_seconds: float = 23 * 3600.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        healthy_seconds: float = 5.0,
        ping_interval: float | None = 60.0,
        ping_timeout: float | None = 30.0,
        open_timeout: float = 10.0,
        ack_timeout: float = 5.0,
        max_streams: int = MAX_STREAMS_PER_CONNECTION,
        messages_per_second: int = EXCHANGE_MESSAGES_PER_SECOND // 2,
        streams_per_message: int = 50,
        max_frame_bytes: int = 8 * 1024 * 1024,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if messages_per_second < 1 or messages_per_second > EXCHANGE_MESSAGES_PER_SECOND:
            raise ValueError(f"messages_per_second must be 1..{EXCHANGE_MESSAGES_PER_SECOND}")
        if not 1 <= max_streams <= MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"max_streams must be 1..{MAX_STREAMS_PER_CONNECTION}")
        self.name = name
        self._url = url
        self._on_frame = on_frame
        self._on_connect = on_connect
        self.streams: set[str] = set()
        self._check_names(streams)
        self.streams.update(streams)
        if len(self.streams) > max_streams:
            raise SubscriptionError(f"{len(self.streams)} streams exceed {max_streams} per connection")
        self.idle_seconds = idle_seconds
        self.rollover_seconds = rollover_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_seconds = healthy_seconds
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.ack_timeout = ack_timeout
        self.max_streams = max_streams
        self.messages_per_second = messages_per_second
        self.streams_per_message = streams_per_message
        self.max_frame_bytes = max_frame_bytes
        self._rand = rand
        self._sleep = sleep
        self._clock = clock
        self.stats = ConnectionStats()
        self._current: _Socket | None = None
        self._opening: _Socket | None = None
        self._deliver_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[Any]] = set()

    # --- the owner's interface -------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected until `close()`; never returns earlier (errors are retried)."""
        attempt = 0
        first = True
        try:
            while not self._closing.is_set():
                try:
                    sock = await self._open()
                except Exception as exc:  # refused, timed out, closed, on_connect failed: all retried
                    if self._closing.is_set():
                        break
                    self.stats.failed_attempts += 1
                    self._error(f"connect failed: {_describe(exc)}")
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                if not first:
                    self.stats.reconnects += 1
                first = False
                await self._make_current(sock)
                started = self._clock()
                await self._watch()
                if self._clock() - started >= self.healthy_seconds:
                    attempt = 0  # a healthy connection: the next failure starts the backoff afresh
                if self._closing.is_set():
                    break
                await self._backoff(attempt)
                attempt += 1
        finally:
            await self._close_sockets()

    async def subscribe(self, streams: Iterable[str]) -> None:
        """Add streams; sent now on the open socket(s), and again on every reconnect."""
        wanted = set(streams) - self.streams
        if not wanted:
            await self._sync_open_sockets()  # a socket left behind by a failed request catches up
            return
        self._check_names(wanted)
        if len(self.streams) + len(wanted) > self.max_streams:
            raise SubscriptionError(
                f"{self.name}: {len(self.streams)} + {len(wanted)} streams exceed {self.max_streams} per connection"
            )
        self.streams |= wanted
        try:
            await self._sync_open_sockets()
        except SubscriptionRefused:
            # The exchange said no (e.g. an unknown stream): do not ask again on every reconnect.
            self.streams -= wanted
            raise

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        self.streams -= set(streams)
        await self._sync_open_sockets()

    async def reconnect(self, reason: str) -> None:
        """Drop the current socket now; `run()` opens a new one (a new URL from the URL factory,
        then `on_connect`), after the usual backoff. E.g. on `listenKeyExpired`."""
        sock = self._current
        if sock is None or sock.retired:
            return
        sock.lost_reason = reason
        await self._discard(sock)

    async def close(self) -> None:
        """Stop reconnecting and close every socket; `run()` returns."""
        self._closing.set()
        await self._close_sockets()

    @property
    def closed(self) -> bool:
        """`close()` was called: `run()` returns at once; make a new connection to start again."""
        return self._closing.is_set()

    @property
    def connected(self) -> bool:
        return self._current is not None and not self._current.retired

    # --- opening, switching, watching --------------------------------------------------------

    async def _open(self) -> _Socket:
        """A new socket: connected, subscribed to the current set, `on_connect` awaited; its frames
        are held (not handed on) until it is made current."""
        url = self._url if isinstance(self._url, str) else await self._url()
        ws = await connect(
            url,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=2,
            max_size=self.max_frame_bytes,
            compression=None,  # the exchange does not negotiate it; saves CPU on 1 s arrays
        )
        now = self._clock()
        sock = _Socket(ws=ws, opened_at=now, subscribed=_streams_in_url(url), last_frame=now)
        self._opening = sock
        try:
            sock.reader = asyncio.create_task(self._read(sock), name=f"{self.name}-reader")
            await self._sync(sock)
            if self._on_connect is not None:
                await self._on_connect()
            if self._closing.is_set():
                raise ConnectionClosing(self.name)
        except BaseException:
            self._opening = None
            await self._discard(sock)
            raise
        self._opening = None
        return sock

    async def _make_current(self, sock: _Socket) -> None:
        """Switch delivery to `sock`: hand on what it held (in order), then retire the old socket.

        Under the delivery lock, so no frame of the old socket is handed on after the first of the
        new one, and a frame the new one received during the switch is held, then delivered."""
        old = self._current
        async with self._deliver_lock:
            if old is not None:
                old.retired = True
            while sock.held:
                text, received_at = sock.held.popleft()
                await self._hand_on(text, received_at)
            sock.active = True
        self._current = sock
        self.stats.connects += 1
        self.stats.connected = True
        self.stats.connected_at = datetime.now(UTC)
        if old is not None:
            self._spawn(self._discard(old))

    async def _watch(self) -> None:
        """Until the current socket dies (closed, idle); rolls it over when due."""
        while not self._closing.is_set():
            sock = self._current
            assert sock is not None and sock.reader is not None
            now = self._clock()
            deadline = sock.opened_at + self.rollover_seconds
            if self.idle_seconds is not None:
                deadline = min(deadline, sock.last_frame + self.idle_seconds)
            await asyncio.wait({sock.reader}, timeout=max(0.0, deadline - now))
            if sock.reader.done():
                if sock.lost_reason:
                    self._lost(sock, f"reconnect requested: {sock.lost_reason}")
                else:
                    self._lost(sock, "closed by the server" if sock.ws.close_code is not None else "reader stopped")
                sock.retired = True
                return
            now = self._clock()
            if self.idle_seconds is not None and now - sock.last_frame >= self.idle_seconds:
                self.stats.idle_reconnects += 1
                self._lost(sock, f"no frame for {self.idle_seconds:g} s")
                await self._discard(sock)
                return
            if now - sock.opened_at >= self.rollover_seconds:
                await self._roll_over(sock)

    async def _roll_over(self, old: _Socket) -> None:
        """Open the successor while `old` keeps delivering; switch only once it is ready."""
        try:
            successor = await self._open()
        except ConnectionClosing:
            return
        except Exception as exc:
            # Keep the old socket; try again a little later (it may still have hours to live).
            self._error(f"rollover failed: {_describe(exc)}")
            old.opened_at += min(self.backoff_max, 60.0)
            return
        self.stats.rollovers += 1
        logger.info("stream %s: rolled over to a new connection", self.name)
        await self._make_current(successor)

    def _lost(self, sock: _Socket, why: str) -> None:
        if self._closing.is_set():
            return
        self.stats.connected = False
        if sock.reader is not None and sock.reader.done() and not sock.reader.cancelled():
            exc = sock.reader.exception()
            if exc is not None:
                why = f"{why}: {_describe(exc)}"
        self._error(f"connection lost ({why}); reconnecting")

    async def _backoff(self, attempt: int) -> None:
        """Full jitter: a uniform delay in [0, min(max, initial * 2**attempt)]; cut short by close()."""
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** min(attempt, 30)))
        delay = self._rand() * ceiling
        sleeper = asyncio.ensure_future(self._sleep(delay))
        closer = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({sleeper, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            closer.cancel()

    # --- reading ----------------------------------------------------------------------------

    async def _read(self, sock: _Socket) -> None:
        async for message in sock.ws:
            received_at = datetime.now(UTC)
            sock.last_frame = self._clock()
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            if self._is_reply(sock, text):
                continue
            if sock.retired:
                continue
            if not sock.active:
                sock.held.append((text, received_at))
                continue
            async with self._deliver_lock:
                if not sock.retired:
                    await self._hand_on(text, received_at)

    async def _hand_on(self, text: str, received_at: datetime) -> None:
        self.stats.frames += 1
        self.stats.last_frame_at = received_at
        try:
            result = self._on_frame(text, received_at)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # A consumer's bug must not take the socket down with it; it is logged with its trace.
            logger.exception("stream %s: on_frame failed", self.name)

    def _is_reply(self, sock: _Socket, text: str) -> bool:
        """A reply to our SUBSCRIBE/UNSUBSCRIBE (`{"result":..,"id":..}` or an error with our id).
        Only short frames are looked at: data frames are never parsed here."""
        if len(text) > 512 or '"id"' not in text:
            return False
        try:
            reply = json.loads(text)
        except ValueError:
            return False
        if not isinstance(reply, dict) or "id" not in reply or ("result" not in reply and "code" not in reply):
            return False
        future = sock.acks.pop(reply["id"], None) if isinstance(reply["id"], int) else None
        if future is None:
            return "result" in reply  # an ack of nothing we wait for: not data either
        if not future.done():
            if "code" in reply:
                future.set_exception(SubscriptionRefused(f"{reply.get('code')}: {reply.get('msg')}"))
            else:
                future.set_result(reply["result"])
        return True

    # --- subscriptions ----------------------------------------------------------------------

    async def _sync_open_sockets(self) -> None:
        for sock in (self._current, self._opening):
            if sock is not None and not sock.retired:
                await self._sync(sock)

    async def _sync(self, sock: _Socket) -> None:
        """Bring one socket's subscriptions to the wanted set (serialized per socket, so concurrent
        changes converge: each pass re-reads both sets)."""
        async with sock.sync_lock:
            while True:
                add = sorted(self.streams - sock.subscribed)
                remove = sorted(sock.subscribed - self.streams)
                if not add and not remove:
                    return
                if add:
                    batch = add[: self.streams_per_message]
                    await self._request(sock, "SUBSCRIBE", batch)
                    sock.subscribed.update(batch)
                else:
                    batch = remove[: self.streams_per_message]
                    await self._request(sock, "UNSUBSCRIBE", batch)
                    sock.subscribed.difference_update(batch)

    async def _request(self, sock: _Socket, method: str, params: list[str]) -> None:
        await self._pace(sock)
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sock.acks[request_id] = future
        try:
            await sock.ws.send(json.dumps({"method": method, "params": params, "id": request_id}))
            reader = sock.reader
            assert reader is not None
            done, _ = await asyncio.wait(
                {future, reader}, timeout=self.ack_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if future in done:
                future.result()
                return
            if reader in done:
                raise SubscriptionError(f"{self.name}: the connection closed before {method} was acknowledged")
            raise SubscriptionError(f"{self.name}: no reply to {method} within {self.ack_timeout:g} s")
        except ConnectionClosed as exc:
            raise SubscriptionError(f"{self.name}: {method} not sent: {_describe(exc)}") from None
        finally:
            sock.acks.pop(request_id, None)
            if not future.done():
                future.cancel()

    async def _pace(self, sock: _Socket) -> None:
        """At most `messages_per_second` messages in any one-second window on a socket."""
        while True:
            now = self._clock()
            while sock.sent and now - sock.sent[0] >= 1.0:
                sock.sent.popleft()
            if len(sock.sent) < self.messages_per_second:
                sock.sent.append(now)
                return
            await asyncio.sleep(1.0 - (now - sock.sent[0]) + 0.001)

    def _check_names(self, streams: Iterable[str]) -> None:
        for stream in streams:
            if not isinstance(stream, str) or not stream or any(c in stream for c in '/?&# "'):
                raise SubscriptionError(f"{self.name}: bad stream name {stream!r}")

    # --- closing ----------------------------------------------------------------------------

    async def _discard(self, sock: _Socket) -> None:
        sock.retired = True
        if sock.reader is not None:
            sock.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sock.reader
        with contextlib.suppress(Exception):
            await sock.ws.close()
        for future in sock.acks.values():
            future.cancel()

    async def _close_sockets(self) -> None:
        sockets = [s for s in (self._current, self._opening) if s is not None]
        self._current = None
        self.stats.connected = False
        for sock in sockets:
            await self._discard(sock)
        background = list(self._background)
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _error(self, message: str) -> None:
        self.stats.last_error = message
        logger.warning("stream %s: %s", self.name, message)


def _streams_in_url(url: str) -> set[str]:
    """Streams a combined URL (`/stream?streams=a/b`) subscribes to by itself."""
    values = parse_qs(urlsplit(url).query).get("streams", [])
    return {name for value in values for name in value.split("/") if name}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
