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
# Only this bench's keys, if REDIS_URL points at a Redis: its cache.clear() deletes under this prefix alone.
os.environ.setdefault("REDIS_KEY_PREFIX", "bench-paper")

from harness import emit_row, setup_django, summary


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from local_market import LocalMarketClient  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.exchange import SimExchange, default_symbols  # noqa: E402
from execution.models import PendingOrder, Position  # noqa: E402
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


def bench_orders(n: int) -> None:
    """The paper order against the raw floor, interleaved one for one in this process (so that a
    busy machine slows both alike), then the statements and round trips of one order."""
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    account = Account.objects.create(owner=owner, name="bench-orders", paper_balance=Decimal("1e12"))
    service = ExecutionService(account)
    sides = ["BUY", "SELL"]
    floor = RawFloor(account)
    for i in range(20):  # warm-up: connections, caches, prepared statements
        service.execute_market_order(symbol="BTCUSDT", side=sides[i % 2], quantity="0.01", leverage=5)
        floor.run()
    orders, floors = [], []
    settings.DEBUG = False  # as in production: no query logging (the counts below capture their own)
    for i in range(n):
        started = time.perf_counter()
        service.execute_market_order(symbol="BTCUSDT", side=sides[i % 2], quantity="0.01", leverage=5)
        orders.append(time.perf_counter() - started)
        floors.append(floor.run())
    floor.close()
    plain = count_round_trips(
        lambda: service.execute_market_order(symbol="ETHUSDT", side="BUY", quantity="0.1", leverage=5)
    )
    protected = count_round_trips(
        lambda: service.execute_market_order(
            symbol="SOLUSDT", side="BUY", quantity="1", leverage=5, take_profit="300", stop_loss="130"
        )
    )
    order_p50, floor_p50 = statistics.median(orders), statistics.median(floors)
    print(f"paper market order through ExecutionService: {summary(orders)}  ({1 / statistics.mean(orders):.0f}/s)")
    print(f"raw floor (psycopg: BEGIN, INSERT trade, UPDATE position, COMMIT): {summary(floors)}")
    print(f"order p50 / floor p50 = {order_p50 / floor_p50:.1f}x (target <= 3x)")
    for name, (statements, trips, commits) in (("plain", plain), ("with TP/SL", protected)):
        print(
            f"SQL per order, {name}: {statements} statements, {trips - commits} round trips "
            f"({trips} with the {commits} COMMITs; pipelined statements count once)"
        )
    emit_row(bench="paper", figure="paper order p50", value=order_p50 * 1000, unit="ms")
    emit_row(bench="paper", figure="raw floor p50", value=floor_p50 * 1000, unit="ms")
    ratio = order_p50 / floor_p50
    emit_row(
        bench="paper",
        figure="paper order / raw floor (p50)",
        value=ratio,
        unit="x",
        ratio=ratio,
        ratio_of="raw floor p50",
        target="<= 3x",
        met=ratio <= 3,
    )
    emit_row(bench="paper", figure="SQL statements per paper order with TP/SL", value=protected[0], unit="statements")
    emit_row(
        bench="paper",
        figure="SQL round trips per paper order with TP/SL (without BEGIN/COMMIT)",
        value=protected[1] - protected[2],
        unit="round trips",
        target="<= 6",
        met=protected[1] - protected[2] <= 6,
    )
    emit_row(
        bench="paper", figure="SQL round trips per paper order with TP/SL (all)", value=protected[1], unit="round trips"
    )


class RawFloor:
    """The floor: a psycopg transaction on a persistent connection that inserts a trade and
    updates a position (prepared after the first executions, as psycopg does by default)."""

    def __init__(self, account: Account) -> None:
        import psycopg

        self.conn = psycopg.connect(os.environ["DATABASE_URL"])
        self.position = Position.objects.create(
            account=account, symbol="FLOORUSDT", side="LONG", quantity=1, entry_price=1, leverage=1
        )
        self.account_id = account.pk
        self.i = 0

    def run(self) -> float:
        self.i += 1
        started = time.perf_counter()
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO execution_trade (account_id, symbol, side, requested_quantity, quantity, price, fee, "
                "fee_asset, realized_pnl, reduce_only, reserved_margin, client_order_id, exchange_order_id, status, "
                "reason, error_code, error_message, created_at, updated_at) "
                "VALUES (%s, 'FLOORUSDT', 'BUY', 1, 1, 1, 0, 'USDT', 0, false, 0, %s, '', 'filled', 'entry', '', '', "
                "now(), now())",
                [self.account_id, f"floor-{self.i}"],
            )
            self.conn.execute(
                "UPDATE execution_position SET realized_pnl = %s, updated_at = now() WHERE id = %s",
                [Decimal(self.i), self.position.pk],
            )
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def count_round_trips(call) -> tuple[int, int, int]:
    """(statements without BEGIN/COMMIT, round trips with the COMMITs, transactions) of one call.

    Statements sent in one psycopg pipeline (the account lock with the read after it, and the
    BEGIN before them; the apply step's deferred writes) are one round trip together; every
    other statement, and each COMMIT, is a round trip of its own."""
    import psycopg

    pipelines: list[int] = []
    original = psycopg.Connection.pipeline

    @contextlib.contextmanager
    def counted(self):
        before = len(connection.queries_log)
        with original(self) as pipeline:
            yield pipeline
        pipelines.append(sum(1 for q in list(connection.queries_log)[before:] if q["sql"] not in ("BEGIN", "COMMIT")))

    with mock.patch.object(psycopg.Connection, "pipeline", counted), CaptureQueriesContext(connection) as captured:
        call()
    sql = [q["sql"] for q in captured.captured_queries]
    statements = sum(1 for s in sql if s not in ("BEGIN", "COMMIT"))
    commits = sum(1 for s in sql if s == "COMMIT")
    trips = statements - sum(size - 1 for size in pipelines if size) + commits
    return statements, trips, commits


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
    parser.add_argument("--only", choices=["orders", "sweep"], default=None)
    args = parser.parse_args()
    reset_tables()
    if args.only in (None, "orders"):
        client = LocalMarketClient(SimExchange(seed=1))
        with patched(client):
            bench_orders(args.orders)
    if args.only in (None, "sweep"):
        bench_sweeps(args.pending, args.symbols)
    reset_tables()


def bench_sweeps(pending: int, symbols: int) -> None:
    triggered = pending // 100
    small, small_detect = bench_sweep(pending // 10, symbols, triggered)
    large, large_detect = bench_sweep(pending, symbols, triggered)
    print(
        f"sweep scaling: {pending:,} vs {pending // 10:,} pending with {triggered} triggered: "
        f"{large / small:.2f}x whole, {large_detect / small_detect:.2f}x detect+claim (target < 2x)"
    )
    print(f"large sweep: {large:.3f} s whole, {large_detect:.3f} s detect+claim (target < 1 s)")


if __name__ == "__main__":
    main()
