"""The market stream's pipeline without sockets: frames filtered and coalesced, stores and
reactions single-flight (never piled up), periodic marking, rate-limited logging."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from execution.services.paper.sweep import SweepReport
from execution.streams import market
from execution.streams.market import MarketStream, RateLimitedLog
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard

NOW_MS = int(time.time() * 1000)  # frames dated ahead of receipt are dropped (review-stream)


def marks_frame(*items: tuple[str, str, int]) -> str:
    data = [{"e": "markPriceUpdate", "E": e, "s": s, "p": p, "i": p, "r": "0.0001", "T": 0} for s, p, e in items]
    return json.dumps({"stream": "!markPrice@arr@1s", "data": data})


def make_stream(supervisor: StreamSupervisor, **kwargs: Any) -> MarketStream:
    stream = MarketStream(
        supervisor=supervisor, board=StatusBoard(holder="t:1"), url="ws://127.0.0.1:9", mark_seconds=3600, **kwargs
    )
    stream.known_symbols = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT"})
    return stream


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_reactions_are_single_flight_and_coalesce_what_moved_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    stored: list[set[str]] = []
    reactions: list[set[str]] = []
    running = 0
    overlap = False
    lock = threading.Lock()

    def store(marks: list[Any], lasts: list[Any], *, received_at: datetime) -> set[str]:
        stored.append({m.symbol for m in marks})
        return {m.symbol for m in marks}

    def react(symbols: set[str]) -> SweepReport:
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = overlap or running > 1
        reactions.append(set(symbols))
        time.sleep(0.2)  # a slow reaction: the next frames arrive while it runs
        with lock:
            running -= 1
        return SweepReport(filled=1)

    monkeypatch.setattr(market, "store_prices", store)
    monkeypatch.setattr(market, "react_where_paper_trades", react)

    async def scenario() -> MarketStream:
        supervisor = StreamSupervisor(threads=4)
        stream = make_stream(supervisor)
        tasks = [asyncio.create_task(stream._store_loop()), asyncio.create_task(stream._react_loop())]
        now = datetime.now(UTC)
        stream.on_frame(marks_frame(("BTCUSDT", "100", NOW_MS)), now)
        await until(lambda: len(reactions) == 1)
        for i, symbol in enumerate(["ETHUSDT", "SOLUSDT", "ETHUSDT", "BTCUSDT"]):
            stream.on_frame(marks_frame((symbol, "101", NOW_MS + 1000 + i)), now)
            await asyncio.sleep(0.02)
        await until(lambda: len(reactions) == 2 and running == 0)
        await asyncio.sleep(0.3)
        for task in tasks:
            task.cancel()
        await supervisor.shutdown()
        return stream

    stream = asyncio.run(scenario())
    assert not overlap
    assert reactions == [{"BTCUSDT"}, {"ETHUSDT", "SOLUSDT", "BTCUSDT"}]  # one run for all that moved meanwhile
    assert stream.counters.reactions == 2 and stream.counters.fills == 2


def test_frames_are_filtered_before_anything_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> MarketStream:
        supervisor = StreamSupervisor(threads=1)
        stream = make_stream(supervisor)
        at = datetime.now(UTC)
        stream.on_frame(marks_frame(("BTCUSDT", "100", NOW_MS), ("ETHUSDT", "10", NOW_MS)), at)
        stream.on_frame(marks_frame(("BTCUSDT", "100", NOW_MS)), at)  # a duplicate (rollover overlap)
        stream.on_frame(marks_frame(("BTCUSDT", "90", NOW_MS - 1)), at)  # older than seen
        stream.on_frame(marks_frame(("DOGEUSDT", "1", NOW_MS)), at)  # not listed
        stream.on_frame(marks_frame(("ETHUSDT", "-1", NOW_MS + 5)), at)  # a bad item
        stream.on_frame("{", at)
        stream.on_frame(json.dumps({"code": -1, "msg": "nope"}), at)
        stream.on_frame(json.dumps({"result": None, "id": 7}), at)  # an ack: ignored, not bad
        await supervisor.shutdown()
        return stream

    stream = asyncio.run(scenario())
    assert {s: (u.mark_price, u.event_time_ms) for s, u in stream._pending_marks.items()} == {
        "BTCUSDT": (100, NOW_MS),
        "ETHUSDT": (10, NOW_MS),
    }
    assert stream.counters.duplicates == 1
    assert stream.counters.drop_reasons == {
        "out of order": 1,
        "unknown symbol": 1,
        "bad item": 1,
        "bad frame": 1,
        "error reply": 1,
    }
    assert stream.health.dropped_frames == 5 and stream.health.last_event_time_ms == NOW_MS


def test_a_failed_store_lets_the_same_prices_through_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def store(marks: list[Any], lasts: list[Any], *, received_at: datetime) -> set[str]:
        calls.append(len(marks))
        if len(calls) == 1:
            raise RuntimeError("redis down")
        return set()

    monkeypatch.setattr(market, "store_prices", store)

    async def scenario() -> None:
        supervisor = StreamSupervisor(threads=1)
        stream = make_stream(supervisor)
        task = asyncio.create_task(stream._store_loop())
        stream.on_frame(marks_frame(("BTCUSDT", "100", NOW_MS)), datetime.now(UTC))
        await until(lambda: len(calls) == 1)
        await asyncio.sleep(0.05)
        stream.on_frame(marks_frame(("BTCUSDT", "100", NOW_MS)), datetime.now(UTC))  # the same event again
        await until(lambda: len(calls) == 2)
        task.cancel()
        await supervisor.shutdown()

    asyncio.run(scenario())
    assert calls == [1, 1]


def test_open_positions_are_marked_every_mark_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    marked: list[float] = []
    monkeypatch.setattr(market.sweep, "mark_open_positions", lambda: marked.append(time.monotonic()) or 3)

    async def scenario() -> None:
        supervisor = StreamSupervisor(threads=1)
        stream = make_stream(supervisor)
        task = asyncio.create_task(stream._every(0.05, stream._mark_positions, "marking"))
        await until(lambda: len(marked) >= 3)
        task.cancel()
        await supervisor.shutdown()

    asyncio.run(scenario())
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(marked))


def test_rate_limited_log_reports_once_per_interval_with_the_count_withheld(monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[str] = []

    class Recorder:
        def warning(self, message: str, *args: Any) -> None:
            messages.append(message % args)

    monkeypatch.setattr(market, "logger", Recorder())  # not caplog: another test may reconfigure logging
    now = [0.0]
    log = RateLimitedLog(interval=10, clock=lambda: now[0])
    for _ in range(5):
        log.warning("bad frame", "bad frame dropped")
    log.warning("other", "another kind")
    now[0] = 11
    log.warning("bad frame", "bad frame dropped")
    assert messages == [
        "market stream: bad frame dropped",
        "market stream: another kind",
        "market stream: bad frame dropped (4 more since the last report)",
    ]


def test_a_restarted_market_stream_gets_a_new_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market, "listed_symbols", lambda: frozenset({"BTCUSDT"}))
    monkeypatch.setattr(market, "paper_symbols", lambda: market.PaperSymbols(frozenset(), frozenset({"BTCUSDT"})))

    async def scenario() -> tuple[bool, bool, set[str]]:
        supervisor = StreamSupervisor(threads=1)
        stream = make_stream(supervisor)
        first = stream.connection
        await first.close()  # what the end of a failed run leaves behind
        task = asyncio.create_task(stream.run())
        await until(lambda: stream.connection is not first and stream.connection.stats.failed_attempts >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await supervisor.shutdown()
        return first.closed, stream.connection.closed, stream.connection.streams

    first_closed, second_closed, streams = asyncio.run(scenario())
    assert first_closed and second_closed  # the second closed by the cancellation
    assert streams == {"!markPrice@arr@1s", "btcusdt@aggTrade"}  # subscribed before the first connect


def test_positions_are_marked_every_second_by_default(settings) -> None:
    """The stream marks positions at the exchange's own 1 s mark cadence (STREAM_MARK_SECONDS), not
    at the sweep's PAPER_MARK_SECONDS: the API and the dashboard show a mark at most about 1 s old."""
    assert settings.STREAM_MARK_SECONDS == 1.0
    assert settings.PAPER_MARK_SECONDS > 1.0
    stream = MarketStream(supervisor=StreamSupervisor(), board=StatusBoard(holder="t:1"), url="ws://127.0.0.1:9")
    assert stream.mark_seconds == 1.0
