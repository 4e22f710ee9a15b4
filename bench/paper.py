"""The paper order against the raw database floor, on PostgreSQL.

    .venv/bin/python bench/paper.py [--orders 300] [--quick]

A paper market order through ExecutionService (market data served in-process from a
SimExchange) and the raw floor (a psycopg transaction on a persistent connection that inserts a
trade and updates a position), one for one in this process; then the SQL statements and round
trips of one order. DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/bench (created
if missing; its tables are emptied first). The sweep's bench is bench/sweep.py.
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
# Any Redis key this bench writes (REDIS_URL set: the price cache) is under its own prefix.
os.environ.setdefault("REDIS_KEY_PREFIX", "bench-paper")

from harness import emit_row, ensure_database, setup_django, summary

ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from local_market import LocalMarketClient  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.exchange import SimExchange  # noqa: E402
from execution.models import Position  # noqa: E402
from execution.services import ExecutionService  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="make bench: 100 orders")
    args = parser.parse_args()
    reset_tables()
    client = LocalMarketClient(SimExchange(seed=1))
    with patched(client):
        bench_orders(100 if args.quick else args.orders)
    reset_tables()


if __name__ == "__main__":
    main()
