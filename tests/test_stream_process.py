"""The stream process's skeleton: the supervisor's tasks, restarts, shutdown hooks and worker
threads; the status board and the health selector; `--shard` parsing."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from execution.aster.streams.connection import ConnectionStats
from execution.models import StreamKind, StreamStatus
from execution.services.health import market_stream_healthy
from execution.streams.process import Shard, StreamSupervisor
from execution.streams.status import StatusBoard, prune_statuses, write_statuses


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=10))


def test_tasks_are_added_removed_and_cleaned_up() -> None:
    async def scenario() -> list[str]:
        supervisor = StreamSupervisor(threads=2)
        events: list[str] = []

        async def stream(name: str) -> None:
            events.append(f"start {name}")
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.01)  # clean-up that awaits (e.g. a listenKey DELETE)
                events.append(f"cleaned {name}")

        supervisor.add("user:1", lambda: stream("user:1"))
        supervisor.add("user:2", lambda: stream("user:2"))
        with pytest.raises(ValueError, match="already running"):
            supervisor.add("user:1", lambda: stream("again"))
        await asyncio.sleep(0.01)
        assert supervisor.names() == {"user:1", "user:2"} and "user:1" in supervisor
        assert await supervisor.remove("user:1") is True
        assert events[-1] == "cleaned user:1"  # remove() waited for the clean-up
        assert await supervisor.remove("user:1") is False
        assert supervisor.names() == {"user:2"}

        async def hook(name: str) -> None:
            events.append(f"hook {name}")

        supervisor.add_shutdown_hook("a", lambda: hook("a"))
        supervisor.add_shutdown_hook("b", lambda: hook("b"))
        await supervisor.shutdown()
        with pytest.raises(RuntimeError):
            supervisor.add("late", lambda: stream("late"))
        return events

    events = run(scenario())
    assert events == ["start user:1", "start user:2", "cleaned user:1", "cleaned user:2", "hook b", "hook a"]


def test_a_failing_task_is_restarted_with_a_growing_delay_and_a_finished_one_forgotten() -> None:
    async def scenario() -> tuple[int, dict[str, int], set[str]]:
        supervisor = StreamSupervisor(threads=1, restart_delay=0.01, restart_delay_max=0.04)
        calls = 0

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls < 4:
                raise RuntimeError("bug")
            await asyncio.Event().wait()

        async def done() -> None:
            return

        supervisor.add("flaky", flaky)
        supervisor.add("done", done)
        await asyncio.sleep(0.2)
        names = supervisor.names()
        await supervisor.shutdown()
        return calls, supervisor.restarts, names

    calls, restarts, names = run(scenario())
    assert calls == 4 and restarts == {"flaky": 3}
    assert names == {"flaky"}


def test_sigterm_stops_run_and_shuts_down() -> None:
    async def scenario() -> list[str]:
        supervisor = StreamSupervisor(threads=1)
        events: list[str] = []

        async def stream() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                events.append("stream closed")

        async def hook() -> None:
            events.append("hook")

        supervisor.add("s", stream)
        supervisor.add_shutdown_hook("h", hook)
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await supervisor.run()
        return events

    assert run(scenario()) == ["stream closed", "hook"]


@pytest.mark.django_db(transaction=True)
def test_blocking_work_runs_off_the_loop_and_leaves_no_connection_open() -> None:
    async def scenario() -> tuple[int, bool, list[bool]]:
        supervisor = StreamSupervisor(threads=2)
        loop_thread = threading.get_ident()
        usable: list[bool] = []

        def work() -> tuple[int, bool]:
            count = StreamStatus.objects.count()
            usable.append(connection.connection is not None)
            return count, threading.get_ident() != loop_thread

        results = await asyncio.gather(*(supervisor.run_blocking(work) for _ in range(4)))
        after = await supervisor.run_blocking(lambda: connection.connection is None)
        await supervisor.shutdown()
        return results[0][0], all(r[1] for r in results) and after, usable

    count, off_loop_and_closed, usable = run(scenario())
    assert count == 0 and usable == [True] * 4
    if connection.vendor == "postgresql":  # CONN_MAX_AGE=0: closed after each call, as after a request
        assert off_loop_and_closed


@pytest.mark.django_db(transaction=True)
def test_status_board_writes_changed_rows_at_most_once_per_flush() -> None:
    async def scenario() -> StatusBoard:
        supervisor = StreamSupervisor(threads=1)
        board = StatusBoard(holder="host:1", interval=0.05)
        health = board.stream("market@host:1", kind=StreamKind.MARKET)
        stats = ConnectionStats(connected=True, reconnects=2, connected_at=timezone.now())
        health.follow(stats)
        received = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
        event_ms = int(received.timestamp() * 1000) - 120
        for _ in range(100):  # many frames, one write
            health.frame(received_at=received, event_time_ms=event_ms)
        health.dropped(3, reason="bad frame dropped: not JSON")
        await board.flush(supervisor)
        await board.flush(supervisor)  # nothing changed: no write
        assert board.writes == 1
        board.disconnect_all()
        await board.flush(supervisor)
        await supervisor.shutdown()
        return board

    board = run(scenario())
    assert board.writes == 2
    row = StreamStatus.objects.get(name="market@host:1")
    assert (row.kind, row.holder, row.connected, row.reconnects, row.dropped_frames) == (
        "market",
        "host:1",
        False,
        2,
        3,
    )
    assert row.lag_ms == 120 and row.last_error == "bad frame dropped: not JSON"
    assert row.last_frame_at == datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.django_db
def test_market_stream_health_needs_a_connected_stream_with_a_recent_frame() -> None:
    now = timezone.now()
    assert market_stream_healthy(now=now) is False
    board = StatusBoard(holder="h:1")
    health = board.stream("market@h:1", kind=StreamKind.MARKET)
    health.connected = True
    health.frame(received_at=now - timedelta(seconds=30))
    write_statuses(board.changed())
    assert market_stream_healthy(within_seconds=10, now=now) is False  # stale
    health.frame(received_at=now - timedelta(seconds=2))
    write_statuses(board.changed())
    assert market_stream_healthy(within_seconds=10, now=now) is True
    health.connected = False
    write_statuses(board.changed())
    assert market_stream_healthy(within_seconds=10, now=now) is False
    user = board.stream("user:1", kind=StreamKind.USER)
    user.connected = True
    user.frame(received_at=now)
    write_statuses([user])
    assert market_stream_healthy(within_seconds=10, now=now) is False  # a user stream is not market data
    assert prune_statuses(now=now + timedelta(days=2)) == 2


def test_shard_parsing() -> None:
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard.parse("0/1")) == "0/1"
    assert Shard(1, 3).owns(4) and not Shard(1, 3).owns(5)
    for bad in ["3/3", "-1/2", "0/0", "1", "a/b", "1/2/3", ""]:
        with pytest.raises(ValueError, match="K/N"):
            Shard.parse(bad)


@pytest.mark.parametrize("shard", ["2/2", "x", "0/0"])
def test_aster_stream_refuses_a_bad_shard(shard: str) -> None:
    with pytest.raises(CommandError, match="--shard"):
        call_command("aster_stream", "--shard", shard)


def test_aster_stream_refuses_a_url_that_is_not_a_websocket() -> None:
    with pytest.raises(CommandError, match="ws://"):
        call_command("aster_stream", "--url", "http://example.test")
