"""The market-data stream against the simulator over real sockets (issue 11 items 1, 3, 7, 8):
prices reach the cache, paper stops fill from the stream with no sweep, reconnects, the sweep's
REST fallback when the stream is stale, bad frames, two processes at once, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection

from execution.models import PendingOrder, Position, StreamStatus, Trade
from execution.services import price_cache
from execution.services.health import market_stream_healthy
from execution.services.paper.sweep import sweep_paper_triggers
from execution.streams.market import MarketStream
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard
from tests.factories import PaperAccountFactory

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


class StreamThread:
    """The stream process's market side on its own event loop in a thread (as `aster_stream` runs it)."""

    def __init__(self, ws_url: str, *, holder: str = "test:1", **options: Any) -> None:
        self.ws_url = ws_url
        self.holder = holder
        self.options = {"idle_seconds": 3.0, "subscription_seconds": 0.2, "mark_seconds": 0.5, **options}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"stream-{holder}")
        self.error: BaseException | None = None

    async def _main(self) -> None:
        try:
            self.supervisor = StreamSupervisor(threads=4)
            self.board = StatusBoard(holder=self.holder, interval=0.2)
            self.board.attach(self.supervisor)
            self.stream = MarketStream(supervisor=self.supervisor, board=self.board, url=self.ws_url, **self.options)
            self.supervisor.add("market", self.stream.run)
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            await self.supervisor.run(install_signals=False)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise

    def __enter__(self) -> StreamThread:
        self.thread.start()
        assert self.ready.wait(10) and self.error is None
        wait_for(lambda: self.stream.connection.connected, "the stream to connect")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.supervisor.stop)
        self.thread.join(15)
        assert not self.thread.is_alive()
        connection.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OperationalError as exc:  # SQLite's shared in-memory test database: a table lock
            if "locked" not in str(exc):
                raise
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def protected_long(
    account: Any, symbol: str, quantity: str, mark: Decimal, *, stop_below: str = "0.97"
) -> PendingOrder:
    position = Position.objects.create(
        account=account,
        symbol=symbol,
        side="LONG",
        quantity=Decimal(quantity),
        entry_price=mark,
        leverage=2,
        margin=mark * Decimal(quantity) / 2,
    )
    stop = PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal(stop_below)).quantize(Decimal("0.01")),
        client_order_id=f"p{position.pk}-sl",
    )
    take = PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="take_profit",
        side="SELL",
        trigger_price=(mark * Decimal("1.5")).quantize(Decimal("0.01")),
        client_order_id=f"p{position.pk}-tp",
        sibling=stop,
    )
    stop.sibling = take
    stop.save(update_fields=["sibling"])
    return stop


def crash(sim: Any, symbol: str, factor: str = "0.9") -> Decimal:
    """Move the simulator's price down by `factor`; returns the new mark."""
    sym = sim.exchange.symbols[symbol]
    sim.exchange.set_price(symbol, sym.price * Decimal(factor))
    return Decimal(sym.mark)


def cached_mark(symbol: str) -> Decimal | None:
    entry = price_cache.cached_prices([symbol]).get(symbol)
    return entry.mark_price if entry else None


def filled(stop: PendingOrder) -> bool:
    stop.refresh_from_db()
    return stop.status == "filled"


def test_a_price_change_reaches_the_cache_and_the_status_row(sim: Any) -> None:
    with StreamThread(sim.ws_url) as process:
        mark = crash(sim, "BTCUSDT", "1.01")
        wait_for(lambda: cached_mark("BTCUSDT") == mark, "the new mark in the cache", timeout=5)
        row = wait_for(lambda: StreamStatus.objects.filter(name="market@test:1", connected=True).first(), "status")
        assert row.kind == "market" and row.holder == "test:1" and row.last_frame_at is not None
        assert row.lag_ms is not None and -1000 < row.lag_ms < 5000
        assert market_stream_healthy()
        assert process.stream.counters.dropped == 0
    row.refresh_from_db()
    assert row.connected is False  # written at shutdown


def test_a_paper_stop_fills_from_the_stream_with_no_sweep(sim: Any) -> None:
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    mark = Decimal(sim.exchange.symbols["ETHUSDT"].mark)
    stop = protected_long(account, "ETHUSDT", "1", mark)
    with StreamThread(sim.ws_url) as process:
        started = time.monotonic()
        crash(sim, "ETHUSDT")
        wait_for(lambda: filled(stop), "the stop to fill from the stream", timeout=5)
        assert time.monotonic() - started < 3
        # The counter follows the commit (the worker thread returns to the loop after it).
        wait_for(lambda: process.stream.counters.fills == 1, "the reaction's report")
    trade = Trade.objects.get(reason="stop_loss")
    assert trade.status == "filled" and trade.account == account
    assert PendingOrder.objects.get(pk=stop.sibling_id).status == "cancelled"
    assert Position.objects.get(pk=stop.position_id).status == "closed"


def test_a_last_price_order_gets_its_aggtrade_subscription_and_fills(sim: Any) -> None:
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    mark = Decimal(sim.exchange.symbols["SOLUSDT"].mark)
    stop = protected_long(account, "SOLUSDT", "1", mark)
    PendingOrder.objects.filter(pk=stop.pk).update(working_type="CONTRACT_PRICE")
    with StreamThread(sim.ws_url) as process:
        wait_for(lambda: "solusdt@aggTrade" in process.stream.connection.streams, "the aggTrade subscription")
        wait_for(lambda: sim.streams.state()["subscriptions"].get("solusdt@aggTrade") == 1, "the sim to see it")
        crash(sim, "SOLUSDT")
        wait_for(lambda: filled(stop), "the CONTRACT_PRICE stop to fill", timeout=5)
        assert process.stream.counters.last_prices >= 1
        # The order is gone: the subscription is dropped again.
        wait_for(lambda: "solusdt@aggTrade" not in process.stream.connection.streams, "the unsubscription")


def test_after_every_socket_is_dropped_the_stream_reconnects_and_the_next_trigger_fills(sim: Any) -> None:
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    mark = Decimal(sim.exchange.symbols["BTCUSDT"].mark)
    stop = protected_long(account, "BTCUSDT", "0.01", mark)
    with StreamThread(sim.ws_url) as process:
        assert sim.drop_sockets() >= 1
        wait_for(lambda: process.stream.connection.stats.reconnects >= 1, "a reconnect")
        wait_for(lambda: process.stream.connection.connected, "the new connection")
        crash(sim, "BTCUSDT")
        wait_for(lambda: filled(stop), "the stop to fill after the reconnect", timeout=5)
        wait_for(lambda: StreamStatus.objects.filter(reconnects__gte=1).exists(), "the reconnect in the status row")


def test_a_stale_stream_makes_the_sweep_fall_back_to_rest(sim: Any, settings: Any) -> None:
    settings.EXECUTION_STALE_PRICE_SECONDS = 1
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    mark = Decimal(sim.exchange.symbols["BTCUSDT"].mark)
    stop = protected_long(account, "BTCUSDT", "0.01", mark)
    with StreamThread(sim.ws_url, idle_seconds=30.0) as process:
        wait_for(lambda: cached_mark("BTCUSDT") is not None, "a cached mark")
        # While the stream is fresh, the sweep asks REST for no price.
        sim.server.request_log.clear()
        sweep_paper_triggers()
        assert ("GET", "/fapi/v1/premiumIndex") not in sim.server.request_log
        sim.pause_streams()  # the sockets stay open, nothing more is pushed
        time.sleep(1.3)
        crash(sim, "BTCUSDT")
        time.sleep(0.3)
        assert not filled(stop)  # the stream said nothing
        assert process.stream.connection.connected
        report = sweep_paper_triggers()
        assert ("GET", "/fapi/v1/premiumIndex") in sim.server.request_log
        assert report.filled == 1 and filled(stop)
        sim.resume_streams()


def test_out_of_order_and_malformed_frames_change_nothing(sim: Any) -> None:
    with StreamThread(sim.ws_url) as process:
        before = wait_for(lambda: price_cache.cached_prices(["BTCUSDT"]).get("BTCUSDT"), "a cached BTC price")
        now_ms = int(time.time() * 1000)

        def mark_frame(**item: Any) -> str:
            payload = {
                "e": "markPriceUpdate",
                "E": now_ms,
                "s": "BTCUSDT",
                "p": "1.0",
                "i": "1.0",
                "r": "0.0001",
                "T": 0,
            }
            payload.update(item)
            return json.dumps({"stream": "!markPrice@arr@1s", "data": [payload]})

        bad = [
            "not json",
            '{"stream": "!markPrice@arr@1s", "data": [{"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": NaN}]}',
            mark_frame(p="NaN"),
            mark_frame(p="-5"),
            mark_frame(p="0"),
            mark_frame(s="NOPEUSDT"),
            mark_frame(s="btc usdt"),
            mark_frame(E=before.event_time_ms - 60_000),  # older than the cached one
            json.dumps({"stream": "!markPrice@arr@1s", "data": "nonsense"}),
            json.dumps([1, 2, 3]),
            "x" * 10,
        ]
        for text in bad:
            assert sim.inject_frame(text) >= 1
        wait_for(lambda: process.stream.counters.dropped >= len(bad), "every bad frame counted", timeout=5)
        after = price_cache.cached_prices(["BTCUSDT"])["BTCUSDT"]
        assert after.mark_price == before.mark_price
        assert not price_cache.cached_prices(["NOPEUSDT"])
        assert process.stream.connection.connected and process.stream.connection.stats.reconnects == 0
        reasons = process.stream.counters.drop_reasons
        assert {"bad frame", "bad item", "unknown symbol", "out of order"} <= set(reasons)
        wait_for(
            lambda: StreamStatus.objects.filter(name="market@test:1", dropped_frames__gte=len(bad)).exists(),
            "the drops in the status row",
        )
        # Still working afterwards.
        mark = crash(sim, "BTCUSDT", "1.02")
        wait_for(lambda: cached_mark("BTCUSDT") == mark, "a good price after the bad ones")


@pytest.mark.postgres
def test_two_stream_processes_and_a_sweep_fill_each_order_exactly_once(sim: Any) -> None:
    symbols = {"BTCUSDT": "0.01", "ETHUSDT": "0.1", "SOLUSDT": "1"}
    stops = []
    for _ in range(20):
        account = PaperAccountFactory(paper_balance=Decimal("1000000"))
        for symbol, quantity in symbols.items():
            stops.append(protected_long(account, symbol, quantity, Decimal(sim.exchange.symbols[symbol].mark)))
    stop_sweeping = threading.Event()
    sweep_errors: list[BaseException] = []

    def sweeper() -> None:
        try:
            while not stop_sweeping.is_set():
                sweep_paper_triggers()
        except BaseException as exc:
            sweep_errors.append(exc)
        finally:
            connection.close()

    with StreamThread(sim.ws_url, holder="a:1") as first, StreamThread(sim.ws_url, holder="b:2") as second:
        sweep_thread = threading.Thread(target=sweeper)
        sweep_thread.start()
        try:
            for symbol in symbols:
                crash(sim, symbol)
            wait_for(
                lambda: PendingOrder.objects.filter(kind="stop_loss", status="filled").count() == len(stops),
                "every stop filled",
                timeout=20,
            )
        finally:
            stop_sweeping.set()
            sweep_thread.join(20)
        assert sweep_errors == []
        time.sleep(0.5)  # anything still in flight would book a second fill now
        stream_fills = first.stream.counters.fills + second.stream.counters.fills
    fills = Trade.objects.filter(reason="stop_loss")
    assert fills.count() == len(stops)
    assert max(Counter(fills.values_list("position_id", flat=True)).values()) == 1
    assert PendingOrder.objects.filter(kind="take_profit", status="cancelled").count() == len(stops)
    assert Position.objects.filter(status="closed").count() == len(stops)
    assert stream_fills > 0  # the streams did (some of) the work, not only the sweep


@pytest.mark.postgres
def test_sigterm_stops_aster_stream_cleanly(sim: Any) -> None:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "ASTER_BASE_URL": sim.url,
        "ASTER_WS_URL": sim.ws_url,
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "aster_stream", "--only", "market"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline() if process.stdout else ""
        assert f"aster_stream {os.uname().nodename}:{process.pid}: {sim.ws_url}" in first_line
        assert "!markPrice@arr@1s" in first_line
        name = f"market@{os.uname().nodename}:{process.pid}"
        wait_for(lambda: StreamStatus.objects.filter(name=name, connected=True).exists(), "the process's status row")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "stopped:" in stdout and "reconnects" in stdout
    assert "Traceback" not in stderr
    assert StreamStatus.objects.get(name=name).connected is False
    wait_for(lambda: sim.streams.state()["market_sockets"] == 0, "the socket closed")


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    leftover = {t.name for t in threading.enumerate() if t.name.startswith("stream-")} - before
    assert not leftover, leftover
