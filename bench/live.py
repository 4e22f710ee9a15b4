"""Decision-to-wire latency of a live market order against the simulator, next to a bare
signed request of the same order, with and without Redis, in one process (interleaved).

    .venv/bin/python bench/live.py [--orders 200] [--rounds 4]

PostgreSQL (DATABASE_URL, default .../bench). Redis: BENCH_REDIS_URL (or REDIS_URL); without
one only the runs without Redis are made. Every Redis key the bench writes carries its own
prefix (REDIS_KEY_PREFIX=bench-live) and only those are deleted.

"Wire" is the moment the order's POST is handed to the HTTP session. The runs, each in
`--rounds` slices taken in turn so that a busy machine slows all alike:
- `rest`: no price cache entry and LIVE_BALANCE_CACHE_SECONDS=0: the service fetches the mark
  (premiumIndex) and the balance for every order;
- `cached`: a feeder thread writes the simulator's marks into the price cache every second
  (what the stream process does), so the mark comes from the cache, and the balance is reused
  for LIVE_BALANCE_CACHE_SECONDS; the venue account's position and asset modes are held in the
  process, its margin type and leverage per symbol in the shared lease (setup_cache.SymbolSetup:
  one script call before the wire and one after the answer in the Redis runs, in the process
  in the others);
and each of them with the price cache and the weight budget in Redis (`+redis`) or not (the
table, and a per-process budget). The bare request only signs.

Request weight: the simulator's reply weights are counted per order. This bench sends a few
hundred orders a minute from one IP, so the budget is raised (ASTER_WEIGHT_LIMIT_1M) to model
the simulator, not the exchange's 2400 a minute; the weight per order it prints says how many
orders a minute one IP can send on the real exchange.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from decimal import Decimal

os.environ.setdefault("ASTER_WEIGHT_LIMIT_1M", "1000000")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.setdefault("REDIS_KEY_PREFIX", "bench-live")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
os.environ["REDIS_URL"] = ""  # switched per run below; the Django cache stays in-process

from harness import emit_row, percentile, setup_django, simulator_process, summary  # noqa: E402
from paper import ensure_database, reset_tables  # noqa: E402

ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.client import AsterClient  # noqa: E402
from execution.aster.simulator.demo_accounts import DEMO_V1  # noqa: E402
from execution.aster.streams.frames import MarkPriceUpdate  # noqa: E402
from execution.models import PriceCacheEntry  # noqa: E402
from execution.services import (  # noqa: E402
    ExecutionService,
    market_data,
    price_cache,
)
from execution.services.adapters.live import LiveExecutionAdapter  # noqa: E402
from execution.services.exchange import public_client, reset_exchange_clients  # noqa: E402

CACHED_MARK = market_data.cached_mark


def _bench_redis_pair():  # type: ignore[no-untyped-def]
    """The price cache's Redis, always the bench's own: the feeder thread writes there while the
    main thread switches settings.REDIS_URL between runs (which only picks the backend)."""
    import redis

    with price_cache._redis_lock:
        pair = price_cache._redis_clients.get(BENCH_REDIS_URL)
        if pair is None:
            client = redis.Redis.from_url(BENCH_REDIS_URL, decode_responses=True)
            pair = price_cache._redis_clients[BENCH_REDIS_URL] = (
                client,
                client.register_script(price_cache._STORE_SCRIPT),
            )
        return pair


if BENCH_REDIS_URL:
    price_cache._redis_pair = _bench_redis_pair


class Feeder:
    """The stream process's part: the simulator's marks into the price cache every second, in
    the table and (when there is one) in Redis, whichever the current run reads."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = public_client()
        try:
            while not self.stop.is_set():
                updates = [
                    MarkPriceUpdate(
                        symbol=i.symbol,
                        mark_price=i.mark_price,
                        index_price=i.index_price,
                        funding_rate=i.last_funding_rate,
                        next_funding_time_ms=i.next_funding_time_ms,
                        event_time_ms=i.time_ms,
                    )
                    for i in client.premium_indexes().values()
                ]
                now = timezone.now()
                price_cache._db_store_marks(updates, now)
                if self.redis_url:
                    price_cache._redis_store(updates, now, marks=True)
                self.stop.wait(1.0)
        finally:
            connection.close()


def clear_price_cache(redis_url: str) -> None:
    """Only this bench's keys (its REDIS_KEY_PREFIX), and the table of its own database."""
    if redis_url:
        client = price_cache._redis()
        keys = list(client.scan_iter(match=price_cache.redis_key("*")))
        # The shared set-up flags too (a previous run's would name a leverage this simulator never set).
        keys += list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:live:setup:*"))
        client.delete(price_cache.redis_index_key(), *keys)
    PriceCacheEntry.objects.all().delete()


class Run:
    """One configuration: its adapter (its own client, hence its own weight budget), and samples."""

    def __init__(self, name: str, account: Account, *, redis_url: str, cached: bool) -> None:
        self.name, self.account, self.redis_url, self.cached = name, account, redis_url, cached
        self.to_wire: list[float] = []
        self.total: list[float] = []
        self.weight = 0
        self.orders = 0
        self.adapter: LiveExecutionAdapter | None = None

    def enter(self) -> None:
        settings.REDIS_URL = self.redis_url
        settings.LIVE_BALANCE_CACHE_SECONDS = 2.0 if self.cached else 0
        # rest: the price cache is not read at all (as with no stream), so premiumIndex it is.
        market_data.cached_mark = CACHED_MARK if self.cached else (lambda symbol: None)
        if self.adapter is None:
            reset_exchange_clients()
            self.adapter = LiveExecutionAdapter(self.account)
            self.adapter.client.sync_time()
            self._instrument(self.adapter.client)

    def _instrument(self, client: AsterClient) -> None:
        send, request = client._send_once, client.session.request

        def counted(method, path, params, **kwargs):  # type: ignore[no-untyped-def]
            self.weight += kwargs["weight"]
            return send(method, path, params, **kwargs)

        def timed(method, url, **kwargs):  # type: ignore[no-untyped-def]
            if method == "POST" and url.endswith("/order"):
                self.wire = time.perf_counter()
            return request(method, url, **kwargs)

        client._send_once = counted  # type: ignore[method-assign]
        client.session.request = timed  # type: ignore[method-assign]

    def order(self, i: int, *, record: bool) -> None:
        assert self.adapter is not None
        service = ExecutionService(self.account, adapter=self.adapter)
        started = time.perf_counter()
        service.execute_market_order(
            symbol="BTCUSDT", side="BUY" if i % 2 == 0 else "SELL", quantity=Decimal("0.01"), leverage=5
        )
        if record:
            self.to_wire.append(self.wire - started)
            self.total.append(time.perf_counter() - started)
            self.orders += 1


def make_account(name: str) -> Account:
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    return Account.objects.create(
        owner=owner,
        name=name,
        is_paper_trading=False,
        api_version="v1",
        api_key=DEMO_V1["api_key"],
        api_secret=DEMO_V1["api_secret"],
    )


def bare_signing(adapter: LiveExecutionAdapter, n: int) -> list[float]:
    signer = adapter.client._signer
    assert signer is not None
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "MARKET"),
        ("quantity", "0.01"),
        ("newClientOrderId", "bare-1"),
        ("newOrderRespType", "RESULT"),
    ]
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        signed = signer.sign(params)
        headers = {**signed.headers, "Content-Type": "application/x-www-form-urlencoded"}
        samples.append(time.perf_counter() - started)
        del headers
    return samples


def interleave(runs: list[Run], orders: int, rounds: int, between: Callable[[], None]) -> None:
    per_round = max(1, orders // rounds)
    counter = 0
    for run in runs:  # warm-up: connections, prepared statements, the set-up flags
        run.enter()
        for _ in range(10):
            run.order(counter, record=False)
            counter += 1
    for _ in range(rounds):
        for run in runs:
            run.enter()
            between()
            for _ in range(per_round):
                run.order(counter, record=True)
                counter += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="make bench: 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    reset_tables()
    settings.DEBUG = False  # as in production: no query logging
    with simulator_process() as url:
        settings.ASTER_BASE_URL = url
        reset_exchange_clients()
        clear_price_cache(BENCH_REDIS_URL)
        # One account (the simulator's one demo account): the runs take turns, and its orders
        # alternate BUY/SELL across them, so the venue's position and ours stay the same.
        account = make_account("bench-live")
        runs = [Run("rest", account, redis_url="", cached=False), Run("cached", account, redis_url="", cached=True)]
        if BENCH_REDIS_URL:
            runs.append(Run("rest+redis", account, redis_url=BENCH_REDIS_URL, cached=False))
            runs.append(Run("cached+redis", account, redis_url=BENCH_REDIS_URL, cached=True))
        feeder = Feeder(BENCH_REDIS_URL)
        feeder.thread.start()
        time.sleep(1.0)  # the first batch is in
        try:
            interleave(runs, args.orders, args.rounds, between=lambda: None)
        finally:
            feeder.stop.set()
            feeder.thread.join()
        assert runs[0].adapter is not None
        bare = bare_signing(runs[0].adapter, args.orders)
        clear_price_cache(BENCH_REDIS_URL)
    report(runs, bare)
    reset_tables()


def report(runs: list[Run], bare: list[float]) -> None:
    bare_p50 = percentile(bare, 50)
    print(f"bare signed request to wire        {summary(bare)}")
    for run in runs:
        overhead = (percentile(run.to_wire, 50) - bare_p50) * 1000
        weight = run.weight / max(run.orders, 1)
        print(f"decision-to-wire, {run.name:<13} {summary(run.to_wire)}")
        print(f"  overhead p50 {overhead:.2f} ms; whole order {summary(run.total)}; request weight {weight:.1f}/order")
        redis = "with Redis" if run.redis_url else "without Redis"
        source = "cached mark and balance" if run.cached else "REST mark and balance"
        target = run.cached and bool(run.redis_url)
        emit_row(
            bench="live",
            figure=f"decision-to-wire overhead p50, {source}, {redis}",
            value=overhead,
            unit="ms",
            target="<= 5 ms" if target else None,
            met=overhead <= 5 if target else None,
        )
        emit_row(bench="live", figure=f"request weight per order, {source}, {redis}", value=weight, unit="weight")
    emit_row(bench="live", figure="bare signed request p50", value=bare_p50 * 1000, unit="ms")


if __name__ == "__main__":
    main()
