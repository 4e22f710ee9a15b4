"""One account's order ceiling: paper market orders on ONE account from 1, 2 and 4 processes.

    .venv/bin/python bench/ceiling.py [--seconds 5] [--processes 1 2 4]

Every order of an account takes that account's row lock (a paper order: one transaction), so
the account is served one transaction at a time whatever the number of processes. This measures how many
orders a second one account takes, and where the time under the lock goes: the wait for the
lock (the lock's round trip, which `order_sql` pipelines with the read), the time the lock is
held (from the lock granted to the COMMIT returned), and the time outside the transaction
(market data, the order book).

PostgreSQL (DATABASE_URL, default .../bench); market data in process (SimExchange).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Any

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.setdefault("REDIS_KEY_PREFIX", "bench-ceiling")
os.environ["REDIS_URL"] = ""  # no Redis: this bench measures the database lock

from harness import emit_row, setup_django


def worker(account_id: int, seconds: float, start_at: float, out: Any) -> None:
    """Send orders on the account until `seconds` after `start_at`; report timings."""
    setup_django()
    from django.conf import settings

    settings.DEBUG = False
    from local_market import LocalMarketClient
    from paper import patched

    from accounts.models import Account
    from execution.aster.simulator.exchange import SimExchange
    from execution.services import ExecutionService, order_sql, orders

    timings: dict[str, list[float]] = {"lock_wait": [], "transaction": [], "order": []}
    original_read = order_sql._locked_read

    def timed_read(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_read(*args, **kwargs)
        finally:
            timings["lock_wait"].append(time.perf_counter() - started)

    order_sql._locked_read = timed_read
    # A paper order is one transaction (orders.ExecutionService._place_locally): the lock and
    # its read, the plan and checks, the local fill, the booking, the writes, the COMMIT.
    original_place = orders.ExecutionService._place_locally

    def timed_place(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_place(self, *args, **kwargs)
        finally:
            timings["transaction"].append(time.perf_counter() - started)

    orders.ExecutionService._place_locally = timed_place  # type: ignore[method-assign]
    client = LocalMarketClient(SimExchange(seed=1))
    with patched(client):
        service = ExecutionService(Account.objects.get(pk=account_id))
        for i in range(5):  # warm-up
            service.execute_market_order(symbol="BTCUSDT", side="BUY" if i % 2 else "SELL", quantity="0.01", leverage=5)
        for values in timings.values():
            values.clear()
        while time.time() < start_at:
            time.sleep(0.001)
        i = 0
        while time.time() < start_at + seconds:
            started = time.perf_counter()
            service.execute_market_order(symbol="BTCUSDT", side="BUY" if i % 2 else "SELL", quantity="0.01", leverage=5)
            timings["order"].append(time.perf_counter() - started)
            i += 1
    out.put(timings)


def run(account_id: int, processes: int, seconds: float) -> dict[str, list[float]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 8  # spawned processes set Django up first
    children = [context.Process(target=worker, args=(account_id, seconds, start_at, queue)) for _ in range(processes)]
    for child in children:
        child.start()
    merged: dict[str, list[float]] = {"lock_wait": [], "transaction": [], "order": []}
    for _ in children:
        for key, values in queue.get(timeout=seconds + 120).items():
            merged[key] += values
    for child in children:
        child.join()
    return merged


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--quick", action="store_true", help="make bench: 3 s per run")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    setup_django()
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from paper import ensure_database, reset_tables

    from accounts.models import Account

    ensure_database()
    reset_tables()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    account = Account.objects.create(owner=owner, name="bench-ceiling", paper_balance=Decimal("1e12"))
    for processes in args.processes:
        timings = run(account.pk, processes, args.seconds)
        count = len(timings["order"])
        rate = count / args.seconds
        # Per order: one transaction; the lock's round trip (with the read pipelined after it)
        # includes the wait for the lock; from its return to the COMMIT the lock is held.
        wait, transaction = ms(timings["lock_wait"]), ms(timings["transaction"])
        held = transaction - wait
        outside = ms(timings["order"]) - transaction
        print(
            f"{processes} process(es): {rate:6.1f} orders/s on one account (n={count}); per order p50 "
            f"{ms(timings['order']):.2f} ms = transaction {transaction:.2f} (lock wait + read {wait:.2f}, "
            f"then held {held:.2f}: plan, checks, fill, booking, writes, COMMIT) + outside it {outside:.2f} "
            f"(market data, the book); the account serves at most ~{1000 / held if held > 0 else 0:.0f} orders/s"
        )
        emit_row(
            bench="ceiling", figure=f"one account's orders/s, {processes} process(es)", value=rate, unit="orders/s"
        )
        emit_row(
            bench="ceiling",
            figure=f"order p50, {processes} process(es) on one account",
            value=ms(timings["order"]),
            unit="ms",
        )
        emit_row(
            bench="ceiling",
            figure=f"lock wait + locked read p50, {processes} process(es)",
            value=wait,
            unit="ms",
        )
        emit_row(
            bench="ceiling",
            figure=f"account lock held per order p50, {processes} process(es)",
            value=held,
            unit="ms",
        )
    reset_tables()


if __name__ == "__main__":
    main()
