"""Paper engine throughput and the sweep at scale, on PostgreSQL.

    .venv/bin/python bench/paper.py [--orders 300] [--pending 100000] [--symbols 200]

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/bench (created if missing;
its tables are emptied first). Market data is served in-process from a SimExchange.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from decimal import Decimal
from unittest import mock

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")

from harness import setup_django


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


ensure_database()
setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from local_market import LocalMarketClient  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.exchange import SimExchange, default_symbols  # noqa: E402
from execution.models import PendingOrder, Position, Trade  # noqa: E402
from execution.services import ExecutionService  # noqa: E402
from execution.services.paper import marking, prices, sweep  # noqa: E402


def reset_tables() -> None:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        tables = [
            "execution_executionevent",
            "execution_fundingpayment",
            "execution_pendingorder",
            "execution_trade",
            "execution_position",
            "decisions_decision",
            "accounts_account",
        ]
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def patched(client: LocalMarketClient):
    """Every module that reads public market data, served from the in-process exchange."""
    stack = contextlib.ExitStack()
    for module in ("market_data", "paper.prices", "paper.funding"):
        stack.enter_context(mock.patch(f"execution.services.{module}.public_client", lambda: client))
    return stack


def bench_orders(client: LocalMarketClient, n: int) -> None:
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    account = Account.objects.create(owner=owner, name="bench-orders", paper_balance=Decimal("1e12"))
    service = ExecutionService(account)
    sides = ["BUY", "SELL"]
    for i in range(20):  # warm-up
        service.execute_market_order(symbol="BTCUSDT", side=sides[i % 2], quantity="0.01", leverage=5)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        service.execute_market_order(symbol="BTCUSDT", side=sides[i % 2], quantity="0.01", leverage=5)
        samples.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as plain_capture:
        service.execute_market_order(symbol="ETHUSDT", side="BUY", quantity="0.1", leverage=5)
    with CaptureQueriesContext(connection) as protected_capture:
        service.execute_market_order(
            symbol="SOLUSDT", side="BUY", quantity="1", leverage=5, take_profit="300", stop_loss="100"
        )
    plain, protected = statements(plain_capture), statements(protected_capture)
    floor = bench_floor(account, n)
    mean = statistics.mean(samples)
    print(
        f"paper market orders through ExecutionService: {1 / mean:8.1f} orders/s "
        f"(mean {mean * 1000:.2f} ms, p50 {statistics.median(samples) * 1000:.2f} ms, n={n})"
    )
    print(
        f"SQL queries per order: {plain} (with TP/SL: {protected}; target <= 12), "
        "not counting the BEGIN/COMMIT of its two transactions"
    )
    print(
        f"floor: one transaction inserting a Trade and updating a Position: {floor * 1000:.2f} ms; "
        f"order / floor = {mean / floor:.1f}x (target <= 3x)"
    )


def statements(capture: CaptureQueriesContext) -> int:
    return sum(1 for q in capture.captured_queries if q["sql"] not in ("BEGIN", "COMMIT"))


def bench_floor(account: Account, n: int) -> float:
    position = Position.objects.filter(account=account, status="open").first()
    samples = []
    for i in range(n):
        started = time.perf_counter()
        with transaction.atomic():
            Trade.objects.create(
                account=account,
                symbol="BTCUSDT",
                side="BUY",
                requested_quantity=1,
                quantity=1,
                price=1,
                client_order_id=f"floor-{i}",
                status="filled",
            )
            Position.objects.filter(pk=position.pk).update(realized_pnl=Decimal(i))
        samples.append(time.perf_counter() - started)
    return statistics.mean(samples)


def seed_pending(exchange: SimExchange, *, pending: int, symbols: list[str], triggered: int) -> None:
    """pending/2 protected long positions spread over `symbols`; `triggered` stops already crossed."""
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    positions_needed = pending // 2
    accounts_needed = -(-positions_needed // len(symbols))
    accounts = Account.objects.bulk_create(
        Account(owner=owner, name=f"sweep-{i}", paper_balance=Decimal("1e9")) for i in range(accounts_needed)
    )
    rows = []
    for index in range(positions_needed):
        account, symbol = accounts[index // len(symbols)], symbols[index % len(symbols)]
        mark = exchange.symbols[symbol].mark
        rows.append(
            Position(
                account=account,
                symbol=symbol,
                side="LONG",
                quantity=Decimal("0.1"),
                entry_price=mark,
                leverage=2,
                margin=mark / 20,
            )
        )
    positions = Position.objects.bulk_create(rows, batch_size=5000)
    orders = []
    for index, position in enumerate(positions):
        mark = exchange.symbols[position.symbol].mark
        stop = mark * Decimal("1.01") if index < triggered else mark * Decimal("0.5")
        orders.append(
            PendingOrder(
                account_id=position.account_id,
                position=position,
                symbol=position.symbol,
                kind="stop_loss",
                side="SELL",
                trigger_price=stop.quantize(Decimal("0.001")),
                client_order_id=f"b{position.pk}-sl",
            )
        )
        orders.append(
            PendingOrder(
                account_id=position.account_id,
                position=position,
                symbol=position.symbol,
                kind="take_profit",
                side="SELL",
                trigger_price=(mark * 2).quantize(Decimal("0.001")),
                client_order_id=f"b{position.pk}-tp",
            )
        )
    PendingOrder.objects.bulk_create(orders, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE execution_pendingorder; ANALYZE execution_position;")


def bench_sweep(pending: int, symbol_count: int, triggered: int) -> float:
    reset_tables()
    exchange = SimExchange(seed=1, symbols=default_symbols(max(0, symbol_count - 4)))
    client = LocalMarketClient(exchange)
    symbols = sorted(exchange.symbols)[:symbol_count]
    seed_pending(exchange, pending=pending, symbols=symbols, triggered=triggered)
    cache.clear()
    with patched(client):
        sweep.add_candles = lambda *a, **k: None  # candles: fetched once a minute, not per sweep
        now = timezone.now()
        marks, _skipped = prices.current_prices(set(symbols), with_last=False, now=now)
        started = time.perf_counter()
        marked = marking.mark_to_market(marks, now)  # every PAPER_MARK_SECONDS, not every sweep
        mark_elapsed = time.perf_counter() - started
        cache.set("paper-sweep:marked-at", now.timestamp())
        started = time.perf_counter()
        report = sweep.sweep_paper_triggers()
        elapsed = time.perf_counter() - started
    print(f"mark to market of {marked:,} open positions (every PAPER_MARK_SECONDS): {mark_elapsed:.3f} s")
    print(
        f"sweep over {pending:>7,} pending orders, {symbol_count} symbols, {report.triggered} triggered: "
        f"{elapsed:6.3f} s = detect+claim {report.detect_seconds:.3f} s + fills {report.fill_seconds:.3f} s "
        f"(filled {report.filled}, marked {report.marked}; {client.requests} market-data requests)"
    )
    return elapsed, report.detect_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=200)
    args = parser.parse_args()
    reset_tables()
    client = LocalMarketClient(SimExchange(seed=1))
    with patched(client):
        bench_orders(client, args.orders)
    triggered = args.pending // 100
    small, small_detect = bench_sweep(args.pending // 10, args.symbols, triggered)
    large, large_detect = bench_sweep(args.pending, args.symbols, triggered)
    print(
        f"sweep scaling: {args.pending:,} vs {args.pending // 10:,} pending with {triggered} triggered: "
        f"{large / small:.2f}x whole, {large_detect / small_detect:.2f}x detect+claim (target < 2x)"
    )
    print(f"large sweep: {large:.3f} s whole, {large_detect:.3f} s detect+claim (target < 1 s)")
    reset_tables()


if __name__ == "__main__":
    main()
