"""The market-data stream: marks for every symbol, last prices where a paper order needs them,
into the shared price cache, and paper triggers reacting within about a second.

One combined connection to `ASTER_WS_URL`: `!markPrice@arr@1s` always, and `<symbol>@aggTrade`
for the symbols whose paper CONTRACT_PRICE orders are pending (refreshed every few seconds).

The pipeline, three tasks so that a slow step never blocks the socket:

    on_frame (on the loop: parse, filter, coalesce per symbol)
      -> store (worker thread: `price_cache.store_marks` / `store_last_prices`: changed symbols)
      -> react (worker thread: `paper.sweep.react_to_prices(changed)`)

Each step takes everything that accumulated while the previous run was busy, so a slow
reaction coalesces the symbols that moved meanwhile into its next run instead of piling up
runs (single-flight). A price reaches `react_to_prices` only after its write committed.

Bad input is dropped, counted (`dropped_frames` in the stream's status) and logged at most once
per interval per kind: a frame that is not JSON or not a market frame, an item with a bad
symbol, NaN, a price <= 0, a symbol the exchange does not list, an update older than the newest
seen for its symbol. An update equal to the newest seen (the overlap of a rollover) is a
harmless duplicate: skipped, not counted as bad.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.conf import settings

from execution.aster.streams.connection import StreamConnection, SubscriptionError
from execution.aster.streams.frames import LastPriceUpdate, MarkPriceUpdate, StreamFrameError, parse_market_frame
from execution.metrics import record_sweep_metrics
from execution.models import StreamKind
from execution.services import price_cache
from execution.services.exchange import public_client
from execution.services.paper import sweep
from execution.services.paper import symbols as sweep_symbols
from execution.services.paper.sweep import SweepReport
from execution.services.parity.legs import complete_trigger_shadows
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard, StreamHealth

logger = logging.getLogger(__name__)

MARK_STREAM = "!markPrice@arr@1s"
LAST_PRICE_SUFFIX = "@aggTrade"
MAX_LAST_PRICE_STREAMS = 199  # 200 per connection, one taken by the mark stream

U = TypeVar("U", MarkPriceUpdate, LastPriceUpdate)


@dataclass
class MarketCounters:
    frames: int = 0
    marks: int = 0
    last_prices: int = 0
    dropped: int = 0  # bad frames and bad items (malformed, unknown symbol, older than seen)
    duplicates: int = 0  # an update equal to the newest seen (rollover overlap)
    stores: int = 0
    reactions: int = 0
    reaction_failures: int = 0
    fills: int = 0
    markings: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """At most one log line per `interval` seconds per kind, with the count of those withheld."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._withheld: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = self.clock()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._withheld[kind] = self._withheld.get(kind, 0) + 1
            return
        withheld = self._withheld.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({withheld} more since the last report)" if withheld else ""
        logger.warning("market stream: %s%s", message, suffix)


class MarketStream:
    def __init__(
        self,
        *,
        supervisor: StreamSupervisor,
        board: StatusBoard,
        url: str | None = None,
        idle_seconds: float | None = None,
        rollover_seconds: float | None = None,
        backoff_max: float | None = None,
        subscription_seconds: float = 3.0,
        mark_seconds: float | None = None,
        symbols_seconds: float | None = None,
        mark_stream: str = MARK_STREAM,
    ) -> None:
        self.supervisor = supervisor
        self.board = board
        self.base_url = (url or settings.ASTER_WS_URL).rstrip("/")
        self.mark_stream = mark_stream
        self.name = f"market@{board.holder}"
        self.health: StreamHealth = board.stream(self.name, kind=StreamKind.MARKET)
        self.subscription_seconds = subscription_seconds
        self.mark_seconds = mark_seconds if mark_seconds is not None else settings.STREAM_MARK_SECONDS
        self.symbols_seconds = symbols_seconds if symbols_seconds is not None else settings.ASTER_EXCHANGE_INFO_TTL
        self.counters = MarketCounters()
        self.known_symbols: frozenset[str] | None = None  # None until exchangeInfo was read: accept all
        self._log = RateLimitedLog()
        self._newest_mark: dict[str, int] = {}
        self._newest_last: dict[str, int] = {}
        self._pending_marks: dict[str, MarkPriceUpdate] = {}
        self._pending_lasts: dict[str, LastPriceUpdate] = {}
        self._pending_received_at: datetime | None = None
        self._to_react: set[str] = set()
        self._store_wake = asyncio.Event()
        self._react_wake = asyncio.Event()
        self.idle_seconds: float | None = idle_seconds if idle_seconds is not None else settings.STREAM_IDLE_SECONDS
        self.rollover_seconds: float = (
            rollover_seconds if rollover_seconds is not None else settings.STREAM_ROLLOVER_SECONDS
        )
        self.backoff_max: float = backoff_max if backoff_max is not None else settings.STREAM_BACKOFF_MAX_SECONDS
        self.connection = self._new_connection()

    def _new_connection(self) -> StreamConnection:
        return StreamConnection(
            name=self.name,
            url=self.url,
            streams=[self.mark_stream],
            on_frame=self.on_frame,
            idle_seconds=self.idle_seconds,
            rollover_seconds=self.rollover_seconds,
            backoff_max=self.backoff_max,
        )

    @property
    def url(self) -> str:
        return f"{self.base_url}/stream?streams={self.mark_stream}"

    async def run(self) -> None:
        """The stream's task: the connection and its helpers, until cancelled."""
        if self.connection.closed:  # a restart by the supervisor: the last run closed it
            self.connection = self._new_connection()
        # What the first frames are checked against; bounded, so a slow REST API cannot hold
        # the stream back (without it every well-formed symbol is accepted until the next try).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._refresh_symbols(), timeout=5.0)
        try:
            await self._refresh_subscriptions()
        except Exception:
            logger.exception("market stream: reading the paper symbols failed (retried)")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.connection.run(), name=f"{self.name}:connection")
                group.create_task(self._store_loop(), name=f"{self.name}:store")
                group.create_task(self._react_loop(), name=f"{self.name}:react")
                group.create_task(self._every(self.subscription_seconds, self._refresh_subscriptions, "subscriptions"))
                group.create_task(self._every(self.mark_seconds, self._mark_positions, "marking"))
                group.create_task(self._symbols_loop(), name=f"{self.name}:symbols")
                group.create_task(self._every(1.0, self._follow_connection, "status"))
        finally:
            await self.connection.close()
            self._follow_connection_now()

    # --- on the loop: one frame ------------------------------------------------------------

    def on_frame(self, text: str, received_at: datetime) -> None:
        self.counters.frames += 1
        try:
            frame = parse_market_frame(text)
        except StreamFrameError as exc:
            self._drop(1, "bad frame", f"bad frame dropped: {exc}")
            return
        if frame.error:
            self._drop(1, "error reply", f"the exchange replied with an error: {frame.error}")
            return
        if frame.dropped:
            self._drop(
                frame.dropped, "bad item", f"{frame.dropped} bad item(s) dropped: {'; '.join(frame.drop_reasons)}"
            )
        marks = self._accept(frame.marks, self._newest_mark, "mark", received_at)
        lasts = self._accept(frame.last_prices, self._newest_last, "last price", received_at)
        if not marks and not lasts:
            if frame.marks or frame.last_prices or frame.dropped:
                self.health.frame(received_at=received_at)
            return
        for mark in marks:
            self._pending_marks[mark.symbol] = mark
        for last in lasts:
            self._pending_lasts[last.symbol] = last
        self._pending_received_at = received_at
        self.counters.marks += len(marks)
        self.counters.last_prices += len(lasts)
        newest = max([m.event_time_ms for m in marks] + [last.event_time_ms for last in lasts])
        self.health.frame(received_at=received_at, event_time_ms=newest)
        self._store_wake.set()

    def _accept(self, updates: Iterable[U], newest: dict[str, int], what: str, received_at: datetime) -> list[U]:
        accepted = []
        # The cache refuses these; they must not become the newest seen either, or every real
        # update after them would be dropped as older until the bogus time passed.
        latest_ms = int(received_at.timestamp() * 1000) + price_cache.MAX_FUTURE_MS
        for update in updates:
            if self.known_symbols is not None and update.symbol not in self.known_symbols:
                self._drop(1, "unknown symbol", f"{what} of unknown symbol {update.symbol!r} dropped")
                continue
            if update.event_time_ms > latest_ms:
                self._drop(
                    1, "future", f"{what} of {update.symbol} dated {update.event_time_ms} ahead of receipt dropped"
                )
                continue
            seen = newest.get(update.symbol, 0)
            if update.event_time_ms == seen:
                self.counters.duplicates += 1
                continue
            if update.event_time_ms < seen:
                self._drop(
                    1,
                    "out of order",
                    f"{what} of {update.symbol} at {update.event_time_ms} older than the newest seen ({seen}) dropped",
                )
                continue
            newest[update.symbol] = update.event_time_ms
            accepted.append(update)
        return accepted

    def _drop(self, count: int, kind: str, message: str) -> None:
        self.counters.dropped += count
        self.counters.drop_reasons[kind] = self.counters.drop_reasons.get(kind, 0) + count
        self.health.dropped(count, reason=message)
        self._log.warning(kind, message)

    # --- worker threads: store, react ----------------------------------------------------

    async def _store_loop(self) -> None:
        while True:
            await self._store_wake.wait()
            self._store_wake.clear()
            marks, lasts = list(self._pending_marks.values()), list(self._pending_lasts.values())
            received_at = self._pending_received_at
            self._pending_marks, self._pending_lasts = {}, {}
            if received_at is None or not (marks or lasts):
                continue
            try:
                changed = await self.supervisor.run_blocking(store_prices, marks, lasts, received_at=received_at)
            except Exception:
                logger.exception("market stream: storing %d marks, %d last prices failed", len(marks), len(lasts))
                self._forget_newest(marks, lasts)  # let the next frame of these symbols through again
                continue
            self.counters.stores += 1
            if changed:
                self._to_react |= changed
                self._react_wake.set()

    def _forget_newest(self, marks: list[MarkPriceUpdate], lasts: list[LastPriceUpdate]) -> None:
        for mark in marks:
            if self._newest_mark.get(mark.symbol) == mark.event_time_ms:
                del self._newest_mark[mark.symbol]
        for last in lasts:
            if self._newest_last.get(last.symbol) == last.event_time_ms:
                del self._newest_last[last.symbol]

    async def _react_loop(self) -> None:
        # One task: reactions never overlap; symbols that change during a run wait for the next.
        while True:
            await self._react_wake.wait()
            self._react_wake.clear()
            symbols, self._to_react = self._to_react, set()
            if not symbols:
                continue
            try:
                report = await self.supervisor.run_blocking(react_where_paper_trades, symbols)
            except Exception:
                self.counters.reaction_failures += 1
                logger.exception(
                    "market stream: reacting to %d symbols failed (the sweep is the safety net)", len(symbols)
                )
                continue
            self.counters.reactions += 1
            self.counters.fills += report.filled
            if report.triggered or report.liquidated:
                logger.info(
                    "market stream: %d triggered, %d filled, %d liquidated in %.3f s",
                    report.triggered,
                    report.filled,
                    report.liquidated,
                    report.seconds,
                )

    # --- periodic helpers ------------------------------------------------------------------

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:
                logger.exception("market stream: %s failed", what)

    async def _refresh_subscriptions(self) -> None:
        paper = await self.supervisor.run_blocking(paper_symbols)
        symbols = set(paper.last_price)
        if self.known_symbols is not None:
            symbols &= self.known_symbols
        if len(symbols) > MAX_LAST_PRICE_STREAMS:
            self._log.warning("too many", f"{len(symbols)} symbols need last prices; streaming the first 199")
            symbols = set(sorted(symbols)[:MAX_LAST_PRICE_STREAMS])
        wanted = {f"{symbol.lower()}{LAST_PRICE_SUFFIX}" for symbol in symbols}
        current = {s for s in self.connection.streams if s.endswith(LAST_PRICE_SUFFIX)}
        try:
            if current - wanted:
                await self.connection.unsubscribe(current - wanted)
            await self.connection.subscribe(wanted)
        except SubscriptionError as exc:
            self._log.warning("subscription", f"subscription change failed: {exc}")

    async def _mark_positions(self) -> None:
        marked = await self.supervisor.run_blocking(sweep.mark_open_positions)
        self.counters.markings += 1
        logger.debug("market stream: %d open positions marked", marked)

    async def _symbols_loop(self) -> None:
        while True:
            # Until exchangeInfo was read once, try again soon.
            await asyncio.sleep(self.symbols_seconds if self.known_symbols is not None else 10.0)
            await self._refresh_symbols()

    async def _refresh_symbols(self) -> None:
        try:
            self.known_symbols = await self.supervisor.run_blocking(listed_symbols)
        except Exception as exc:
            # Without exchangeInfo every well-formed symbol is accepted (the cache is keyed by
            # symbol; an unlisted one is never read), rather than dropping every price.
            self._log.warning("symbols", f"exchangeInfo unavailable, symbols not checked: {exc}")

    async def _follow_connection(self) -> None:
        self._follow_connection_now()

    def _follow_connection_now(self) -> None:
        self.health.follow(self.connection.stats)


def store_prices(marks: list[MarkPriceUpdate], lasts: list[LastPriceUpdate], *, received_at: datetime) -> set[str]:
    """Both writes of one batch; the symbols whose mark or last price changed."""
    changed: set[str] = set()
    if marks:
        changed |= price_cache.store_marks(marks, received_at=received_at)
    if lasts:
        changed |= price_cache.store_last_prices(lasts, received_at=received_at)
    return changed


@dataclass(frozen=True)
class PaperSymbols:
    reactive: frozenset[str]  # symbols with a pending paper order or an open paper position
    last_price: frozenset[str]  # symbols with a pending paper CONTRACT_PRICE order (they need aggTrade)


def react_where_paper_trades(symbols: set[str]) -> SweepReport:
    """`react_to_prices` for the moved symbols that have a pending paper order or an open paper
    position: a reaction over the whole market (200+ symbols a second) costs far more than the
    two small queries that say where there is anything to do. Read at reaction time, so an
    order placed just before its price moves is never left out."""
    complete_trigger_shadows(symbols)  # parity: live TP/SL fills waiting for paper's trigger (never raises)
    relevant = symbols & paper_symbols().reactive
    if not relevant:
        return SweepReport()
    report = sweep.react_to_prices(relevant)
    record_sweep_metrics(report, source="stream")
    return report


def paper_symbols() -> PaperSymbols:
    """The symbols a price reaction can do anything for (the sweep's lists: a few index probes
    per symbol, whatever the number of orders)."""
    lists = sweep_symbols.paper_symbols()
    return PaperSymbols(reactive=lists.all, last_price=lists.contract)


def listed_symbols() -> frozenset[str]:
    return frozenset(public_client().exchange_info().symbols)
