"""The reusable stream connection (execution/aster/streams/connection.py) against a test-local
WebSocket server on loopback: reconnects, backoff, idle, rollover without a gap, resubscription,
the exchange's subscription limits, close. Django-free; each test runs its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from execution.aster.streams.connection import StreamConnection, SubscriptionError, SubscriptionRefused


class WsServer:
    """A small exchange double: acks SUBSCRIBE/UNSUBSCRIBE, records what it saw, pushes frames."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.connections: list[ServerConnection] = []
        self.paths: list[str] = []
        self.requests: list[tuple[float, int, dict[str, Any]]] = []  # (time, connection index, message)
        self.greeting: str | None = None  # sent on every new connection
        self.refuse: set[str] = set()  # streams answered with an error
        self.ack = True

    async def __aenter__(self) -> WsServer:
        self.server = await serve(self.handle, "127.0.0.1", 0, ping_interval=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    @property
    def open_connections(self) -> list[ServerConnection]:
        return [c for c in self.connections if c.close_code is None]

    async def handle(self, ws: ServerConnection) -> None:
        index = len(self.connections)
        self.connections.append(ws)
        self.paths.append(ws.request.path if ws.request else "")
        if self.greeting is not None:
            await ws.send(self.greeting)
        async for message in ws:
            request = json.loads(message)
            self.requests.append((time.monotonic(), index, request))
            if not self.ack:
                continue
            if set(request.get("params", [])) & self.refuse:
                await ws.send(json.dumps({"code": -1121, "msg": "Invalid symbol.", "id": request["id"]}))
            else:
                await ws.send(json.dumps({"result": None, "id": request["id"]}))

    async def broadcast(self, text: str) -> None:
        for ws in self.open_connections:
            with contextlib.suppress(Exception):
                await ws.send(text)

    async def drop_all(self) -> None:
        for ws in self.open_connections:
            await ws.close(1011, "dropped")

    def subscribed_on(self, index: int) -> list[str]:
        return [p for _, i, r in self.requests if i == index and r["method"] == "SUBSCRIBE" for p in r["params"]]


class Collector:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.events: list[str] = []

    def on_frame(self, text: str, received_at: datetime) -> None:
        assert received_at.tzinfo is not None
        self.frames.append(text)
        self.events.append(f"frame:{text}")


async def no_sleep(_delay: float) -> None:
    await asyncio.sleep(0)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=15))


def connection(url: str, collector: Collector, **kwargs: Any) -> StreamConnection:
    kwargs.setdefault("rand", lambda: 0.0)
    kwargs.setdefault("idle_seconds", None)
    return StreamConnection(name="test", url=url, on_frame=collector.on_frame, **kwargs)


async def started(conn: StreamConnection) -> asyncio.Task[None]:
    task = asyncio.create_task(conn.run())
    await eventually(lambda: conn.connected)
    return task


def test_frames_are_handed_on_only_after_on_connect_completed() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            server.greeting = "hello"
            collector = Collector()

            async def on_connect() -> None:
                collector.events.append("connect-start")
                await asyncio.sleep(0.1)  # the greeting arrives meanwhile and must be held
                collector.events.append("connect-done")

            conn = connection(server.url + "/ws/x", collector, on_connect=on_connect)
            task = await started(conn)
            await eventually(lambda: collector.frames == ["hello"])
            assert collector.events == ["connect-start", "connect-done", "frame:hello"]
            assert conn.stats.frames == 1 and conn.stats.last_frame_at is not None
            await conn.close()
            await task

    run(scenario)


def test_reconnects_after_the_server_closes_and_resubscribes() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            collector = Collector()
            conn = connection(
                server.url + "/stream?streams=!markPrice@arr@1s", collector, streams=["!markPrice@arr@1s"]
            )
            task = await started(conn)
            await conn.subscribe(["btcusdt@aggTrade", "ethusdt@aggTrade"])
            assert server.subscribed_on(0) == ["btcusdt@aggTrade", "ethusdt@aggTrade"]

            await server.drop_all()
            await eventually(
                lambda: len(server.open_connections) == 1 and conn.connected and len(server.connections) == 2
            )
            await eventually(lambda: server.subscribed_on(1) == ["btcusdt@aggTrade", "ethusdt@aggTrade"])
            # The URL's own stream is not subscribed again by message.
            assert "!markPrice@arr@1s" not in server.subscribed_on(1)
            assert conn.stats.reconnects == 1 and "connection lost" in conn.stats.last_error

            await server.broadcast("after")
            await eventually(lambda: collector.frames == ["after"])

            await conn.unsubscribe(["ethusdt@aggTrade"])
            assert server.requests[-1][2]["method"] == "UNSUBSCRIBE"
            assert server.requests[-1][2]["params"] == ["ethusdt@aggTrade"]
            await conn.close()
            await task

    run(scenario)


def test_backoff_grows_exponentially_with_full_jitter_and_is_capped() -> None:
    async def scenario() -> None:
        delays: list[float] = []
        jitter = iter([1.0, 0.5, 1.0, 0.25, 1.0, 1.0, 0.0, 1.0] + [1.0] * 100)

        async def record(delay: float) -> None:
            delays.append(delay)
            await asyncio.sleep(0)

        async with WsServer() as server:
            url = server.url
        # The server is gone: every attempt is refused.
        conn = StreamConnection(
            name="t",
            url=url,
            on_frame=lambda t, r: None,
            rand=lambda: next(jitter),
            sleep=record,
            backoff_initial=0.5,
            backoff_max=4.0,
        )
        task = asyncio.create_task(conn.run())
        await eventually(lambda: len(delays) >= 8)
        await conn.close()
        await task
        assert delays[:8] == [0.5, 0.5, 2.0, 1.0, 4.0, 4.0, 0.0, 4.0]  # ceilings 0.5, 1, 2, 4, then capped at 4
        assert conn.stats.failed_attempts >= 8 and "connect failed" in conn.stats.last_error

    run(scenario)


def test_backoff_resets_after_a_healthy_connection() -> None:
    async def scenario() -> None:
        delays: list[float] = []

        async def record(delay: float) -> None:
            delays.append(delay)
            await asyncio.sleep(0)

        async with WsServer() as server:
            collector = Collector()
            conn = connection(server.url, collector, rand=lambda: 1.0, sleep=record, healthy_seconds=0.2)
            task = await started(conn)
            await server.drop_all()  # quickly: not healthy → the next delay is the second step
            await eventually(lambda: len(server.connections) == 2 and conn.connected)
            await server.drop_all()
            await eventually(lambda: len(server.connections) == 3 and conn.connected)
            await asyncio.sleep(0.3)  # healthy now
            await server.drop_all()
            await eventually(lambda: len(server.connections) == 4 and conn.connected)
            await conn.close()
            await task
        assert delays == [0.5, 1.0, 0.5]

    run(scenario)


def test_reconnects_when_no_frame_arrives_for_idle_seconds() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            collector = Collector()
            conn = connection(server.url, collector, idle_seconds=0.3)
            task = await started(conn)
            for _ in range(5):  # frames keep it alive past the idle limit
                await server.broadcast("tick")
                await asyncio.sleep(0.1)
            assert len(server.connections) == 1
            await eventually(lambda: len(server.connections) == 2 and conn.connected, timeout=2)
            assert conn.stats.idle_reconnects == 1 and conn.stats.reconnects == 1
            await eventually(lambda: len(server.open_connections) == 1)  # the idle socket was closed
            await conn.close()
            await task

    run(scenario)


def test_rollover_opens_the_successor_first_and_loses_no_frame() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            collector = Collector()
            overlaps: list[int] = []

            async def on_connect() -> None:
                overlaps.append(len(server.open_connections))
                await asyncio.sleep(0.05)  # frames keep coming on both sockets during the switch

            conn = connection(
                server.url + "/stream?streams=a",
                collector,
                rollover_seconds=0.25,
                on_connect=on_connect,
                streams=["a", "b"],
            )
            task = await started(conn)
            for seq in range(120):  # ~1.2 s: four rollovers
                await server.broadcast(str(seq))
                await asyncio.sleep(0.01)
            await conn.close()
            await task
        received = sorted({int(f) for f in collector.frames})
        assert received == list(range(received[0], 120)), "a frame was lost during a rollover"
        assert received[0] <= 1
        assert conn.stats.rollovers >= 3 and conn.stats.reconnects == 0
        assert overlaps[1:] and all(n == 2 for n in overlaps[1:])  # the old socket was still open
        assert all(server.subscribed_on(i) == ["b"] for i in range(len(server.connections)))

    run(scenario)


def test_a_frame_only_the_successor_received_during_the_switch_is_delivered() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            collector = Collector()
            calls = 0

            async def on_connect() -> None:
                nonlocal calls
                calls += 1
                if calls == 2:  # the successor: the old socket never sees this frame
                    await server.connections[-1].send("only-on-the-new-socket")
                    await asyncio.sleep(0.05)

            conn = connection(server.url, collector, rollover_seconds=0.2, on_connect=on_connect)
            task = await started(conn)
            await eventually(lambda: conn.stats.rollovers == 1)
            await conn.close()
            await task
        assert collector.frames == ["only-on-the-new-socket"]

    run(scenario)


def test_failed_rollover_keeps_the_old_socket() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            collector = Collector()
            calls = 0

            async def on_connect() -> None:
                nonlocal calls
                calls += 1
                if calls > 1:
                    raise RuntimeError("reconcile failed")

            conn = connection(server.url, collector, rollover_seconds=0.2, on_connect=on_connect)
            task = await started(conn)
            await eventually(lambda: calls >= 2)
            await server.broadcast("still here")
            await eventually(lambda: collector.frames == ["still here"])
            assert conn.stats.rollovers == 0 and "rollover failed" in conn.stats.last_error
            await conn.close()
            await task

    run(scenario)


def test_subscription_limits_streams_per_connection_and_message_rate() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            conn = connection(server.url, Collector(), max_streams=5, messages_per_second=3, streams_per_message=1)
            task = await started(conn)
            with pytest.raises(SubscriptionError, match="exceed 5"):
                await conn.subscribe([f"s{i}@aggTrade" for i in range(6)])
            assert server.requests == [] and conn.streams == set()

            started_at = time.monotonic()
            await conn.subscribe([f"s{i}@aggTrade" for i in range(5)])
            assert time.monotonic() - started_at >= 0.95  # 5 messages at 3/s
            times = [t for t, _, _ in server.requests]
            assert len(times) == 5
            assert all(times[i + 3] - times[i] >= 0.95 for i in range(len(times) - 3))

            server.refuse = {"bad@aggTrade"}
            await conn.unsubscribe(["s0@aggTrade"])
            with pytest.raises(SubscriptionRefused, match="-1121"):
                await conn.subscribe(["bad@aggTrade"])
            assert "bad@aggTrade" not in conn.streams  # not asked again on every reconnect

            with pytest.raises(SubscriptionError, match="bad stream name"):
                await conn.subscribe(["a/b"])
            await conn.close()
            await task

    run(scenario)


def test_unanswered_subscribe_times_out_and_is_retried_on_the_next_call() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            conn = connection(server.url, Collector(), ack_timeout=0.2)
            task = await started(conn)
            server.ack = False
            with pytest.raises(SubscriptionError, match="no reply"):
                await conn.subscribe(["x@aggTrade"])
            server.ack = True
            await conn.subscribe(["x@aggTrade"])  # nothing new, but the socket catches up
            assert [r["params"] for _, _, r in server.requests] == [["x@aggTrade"], ["x@aggTrade"]]
            await conn.close()
            await task

    run(scenario)


def test_a_failing_consumer_does_not_take_the_connection_down() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            seen: list[str] = []

            def on_frame(text: str, _at: datetime) -> None:
                seen.append(text)
                if text == "boom":
                    raise ValueError("consumer bug")

            conn = StreamConnection(name="t", url=server.url, on_frame=on_frame, idle_seconds=None)
            task = await started(conn)
            await server.broadcast("boom")
            await server.broadcast("next")
            await eventually(lambda: seen == ["boom", "next"])
            assert len(server.connections) == 1
            await conn.close()
            await task

    run(scenario)


def test_close_closes_the_socket_and_stops_a_pending_backoff() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            conn = connection(server.url, Collector())
            task = await started(conn)
            await conn.close()
            await asyncio.wait_for(task, timeout=2)
            await eventually(lambda: server.open_connections == [])
            assert not conn.connected and not conn.stats.connected
            url = server.url

        # Closing while it backs off (a real sleep of up to 30 s) returns at once.
        conn = StreamConnection(name="t", url=url, on_frame=lambda t, r: None, rand=lambda: 1.0, backoff_initial=30)
        task = asyncio.create_task(conn.run())
        await eventually(lambda: conn.stats.failed_attempts == 1)
        started_at = time.monotonic()
        await conn.close()
        await asyncio.wait_for(task, timeout=2)
        assert time.monotonic() - started_at < 1

    run(scenario)


def test_cancelling_run_closes_the_socket() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            conn = connection(server.url, Collector())
            task = await started(conn)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await eventually(lambda: server.open_connections == [])

    run(scenario)


def test_the_url_can_be_produced_per_connection() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            keys = iter(["key1", "key2"])

            async def url() -> str:
                return f"{server.url}/ws/{next(keys)}"

            conn = StreamConnection(name="t", url=url, on_frame=lambda t, r: None, rand=lambda: 0.0, idle_seconds=None)
            task = await started(conn)
            await server.drop_all()
            await eventually(lambda: len(server.connections) == 2 and conn.connected)
            assert server.paths == ["/ws/key1", "/ws/key2"]
            await conn.close()
            await task

    run(scenario)


def test_reconnect_on_request_opens_a_new_socket_with_a_new_url() -> None:
    async def scenario() -> None:
        async with WsServer() as server:
            keys = iter(["key1", "key2"])
            connects = 0

            async def url() -> str:
                return f"{server.url}/ws/{next(keys)}"

            async def on_connect() -> None:
                nonlocal connects
                connects += 1

            conn = StreamConnection(
                name="t",
                url=url,
                on_frame=lambda t, r: None,
                on_connect=on_connect,
                rand=lambda: 0.0,
                idle_seconds=None,
            )
            task = await started(conn)
            await conn.reconnect("listenKeyExpired")
            assert not conn.connected
            await eventually(lambda: len(server.connections) == 2 and conn.connected)
            await eventually(lambda: len(server.open_connections) == 1)
            assert server.paths == ["/ws/key1", "/ws/key2"] and connects == 2
            assert conn.stats.reconnects == 1 and "listenKeyExpired" in conn.stats.last_error
            await conn.close()
            await task

    run(scenario)
