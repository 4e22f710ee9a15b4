"""The paper sweep at scale, on PostgreSQL: cost per size, growth, and worker processes.

    .venv/bin/python bench/sweep.py [--sizes 10000,100000,300000,1000000] [--symbols 200]
        [--rounds 2] [--workers 1,2,4] [--explain]

For each size (pending orders; half as many long positions, each with a stop and a take-profit,
spread over `--symbols` symbols), the sweep runs `--rounds` times with 1 % of the orders
triggered and, interleaved with it in the same process, with a fixed 1,000 triggered. The
growth of detect+claim from 100k to 1M pending is read at the same triggered count (1,000).
Then `--workers` K processes share one sweep of the largest size with 1 % triggered, as K
Celery workers do with PAPER_SWEEP_SHARDS = K (each runs `sweep_paper_triggers(shard=i,
shards=K)`; the wall time is from the start signal to the last one's end).

Seeding is server-side (INSERT ... SELECT generate_series): 1M orders in seconds. Between two
runs the rows a sweep changed are put back (only those). Market data is served in-process
(LocalMarketClient). No Redis is used (the cache is per process; nothing shared is cleared).
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/bench (created if missing; its
tables are emptied first). `--explain` prints the PostgreSQL plans of the searches per size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.pop("REDIS_URL", None)  # never a shared Redis: the cache is this process's memory

from harness import emit_row, ensure_database, setup_django

SYMBOLS = 200
QUANTITY = Decimal("0.1")


ensure_database()
setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from local_market import LocalMarketClient  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.exchange import SimExchange, default_symbols  # noqa: E402
from execution.services.paper import funding, prices, sweep  # noqa: E402
from execution.services.paper.liquidation import LIQUIDATION_SEARCH_SQL, liquidation_probes  # noqa: E402
from execution.services.paper.symbols import SYMBOLS_SQL  # noqa: E402
from execution.services.paper.triggers import TRIGGER_SEARCH_SQL, trigger_probes  # noqa: E402

TABLES = [
    "execution_executionevent",
    "execution_fundingpayment",
    "execution_pendingorder",
    "execution_trade",
    "execution_position",
    "decisions_decision",
    "accounts_account",
]


# --------------------------------------------------------------------------- market


def market(symbol_count: int) -> tuple[LocalMarketClient, list[str], dict[str, Decimal]]:
    exchange = SimExchange(seed=1, symbols=default_symbols(max(0, symbol_count - 4)))
    symbols = sorted(exchange.symbols)[:symbol_count]
    base = {symbol: exchange.symbols[symbol].mark for symbol in symbols}
    return LocalMarketClient(exchange), symbols, base


def patched(client: LocalMarketClient) -> Any:
    import contextlib
    from unittest import mock

    stack = contextlib.ExitStack()
    for module in ("market_data", "paper.prices", "paper.funding"):
        stack.enter_context(mock.patch(f"execution.services.{module}.public_client", lambda: client))
    # Candles are fetched once a minute, not per sweep: left out of the figures.
    stack.enter_context(mock.patch.object(sweep, "add_candles", lambda *a, **k: None))
    return stack


def trigger_marks(base: dict[str, Decimal], per_symbol: int, triggered: int) -> dict[str, Decimal]:
    """Each symbol's mark such that exactly `triggered` stops are crossed in all (spread evenly).
    Stop of rank r (of n per symbol) is at base * (0.9 - 0.4 (r + 0.5) / n): a mark at
    base * (0.9 - 0.4 k / n) crosses the ranks below k."""
    symbols = sorted(base)
    marks = {}
    for index, symbol in enumerate(symbols):
        k = triggered // len(symbols) + (1 if index < triggered % len(symbols) else 0)
        level = Decimal("0.9") - Decimal("0.4") * Decimal(k) / Decimal(per_symbol)
        marks[symbol] = (base[symbol] * level).quantize(Decimal("0.0001"))
    return marks


def set_marks(client: LocalMarketClient, marks: dict[str, Decimal]) -> None:
    for symbol, mark in marks.items():
        client.exchange.set_price(symbol, mark, mark_premium=Decimal("0"))


# --------------------------------------------------------------------------- seeding


def seed(pending: int, symbols: list[str], base: dict[str, Decimal]) -> float:
    """pending/2 long positions (rank r = account index within its symbol), each with a stop at
    its rank's level and a take-profit at twice the price; liquidation prices below every stop."""
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    positions = pending // 2
    per_symbol = positions // len(symbols)
    accounts = Account.objects.bulk_create(
        (Account(owner=owner, name=f"sweep-{i}", paper_balance=Decimal("1e9")) for i in range(per_symbol)),
        batch_size=5000,
    )
    marks = [base[s] for s in symbols]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO execution_position (account_id, symbol, side, quantity, entry_price, leverage, margin,
                unrealized_pnl, realized_pnl, fees_paid, funding_paid, liquidation_price, needs_protection, source,
                status, opened_at, updated_at)
            SELECT (%(accounts)s::bigint[])[g / %(n)s + 1], s.symbol, 'LONG', %(quantity)s, s.mark, 2,
                s.mark * %(quantity)s / 2, 0, 0, 0, 0, round(s.mark * 0.4, 6), false, 'execution', 'open',
                now() - interval '1 hour', now()
            FROM generate_series(0, %(positions)s - 1) AS g
            JOIN unnest(%(symbols)s::varchar[], %(marks)s::numeric[]) WITH ORDINALITY AS s(symbol, mark, k)
              ON s.k = g %% %(n)s + 1
            ORDER BY g
            """,
            {
                "accounts": [a.pk for a in accounts],
                "n": len(symbols),
                "quantity": QUANTITY,
                "positions": per_symbol * len(symbols),
                "symbols": symbols,
                "marks": marks,
            },
        )
        # Position id p (from 1, in g order) has rank (p - 1) / symbols within its symbol.
        for kind, price in (
            ("stop_loss", "round(p.entry_price * (0.9 - 0.4 * (((p.id - 1) / %(n)s) + 0.5) / %(per)s), 6)"),
            ("take_profit", "round(p.entry_price * 2, 6)"),
        ):
            cursor.execute(
                f"""
                INSERT INTO execution_pendingorder (account_id, position_id, symbol, kind, side, trigger_price,
                    working_type, status, client_order_id, exchange_order_id, error_message, venue_cancel_pending,
                    created_at, updated_at)
                SELECT p.account_id, p.id, p.symbol, '{kind}', 'SELL', {price}, 'MARK_PRICE', 'pending',
                    'b' || p.id || '-{kind[:2]}', '', '', false, now() - interval '1 hour', now()
                FROM execution_position p ORDER BY p.id
                """,
                {"n": len(symbols), "per": per_symbol},
            )
        cursor.execute("VACUUM ANALYZE execution_pendingorder")
        cursor.execute("VACUUM ANALYZE execution_position")
        cursor.execute("ANALYZE accounts_account")
    return time.perf_counter() - started


def restore() -> None:
    """Put back what a sweep changed (only those rows): orders pending, positions open, no fills."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE execution_pendingorder SET status = 'pending', trade_id = NULL, closed_at = NULL, "
            "triggered_at = NULL, error_message = '' WHERE status <> 'pending'"
        )
        cursor.execute("DELETE FROM execution_trade")
        cursor.execute(
            "UPDATE execution_position SET status = 'open', quantity = %s, margin = entry_price * %s / 2, "
            "liquidation_price = round(entry_price * 0.4, 6), unrealized_pnl = 0, realized_pnl = 0, fees_paid = 0, "
            "closed_at = NULL WHERE status <> 'open'",
            [QUANTITY, QUANTITY],
        )
        cursor.execute("UPDATE accounts_account SET paper_realized_pnl = 0 WHERE paper_realized_pnl <> 0")
        cursor.execute("TRUNCATE execution_executionevent")
    with connection.cursor() as cursor:  # the restored rows' dead versions would slow the next run
        cursor.execute("VACUUM ANALYZE execution_pendingorder")
        cursor.execute("VACUUM ANALYZE execution_position")


# --------------------------------------------------------------------------- one sweep


def warm(
    client: LocalMarketClient, base: dict[str, Decimal], per_symbol: int, *, shard: int = 0, shards: int = 1
) -> None:
    """A quiet sweep: funding markers and the marking deadline set, connections and plans warm.
    Marking (every PAPER_MARK_SECONDS, not every sweep) is left out of the figures."""
    set_marks(client, trigger_marks(base, per_symbol, 0))
    with patched(client):
        now = timezone.now()
        marks, _ = prices.current_prices(set(base), last_for=set(), now=now)
        funding.settle_funding(marks, now)
        cache.set(sweep.marked_key(shard, shards), now.timestamp() + 3600)
        sweep.sweep_paper_triggers(shard=shard, shards=shards)


def run_sweep(client: LocalMarketClient, marks: dict[str, Decimal]) -> dict[str, float]:
    set_marks(client, marks)
    with patched(client):
        started = time.perf_counter()
        report = sweep.sweep_paper_triggers()
        elapsed = time.perf_counter() - started
    restore()
    return {
        "whole": elapsed,
        "detect": report.detect_seconds,
        "fills": elapsed - report.detect_seconds,
        "triggered": report.triggered,
        "filled": report.filled,
    }


def explain(client: LocalMarketClient, marks: dict[str, Decimal]) -> dict[str, str]:
    """EXPLAIN (ANALYZE) of the three searches, with the prices of a sweep."""
    set_marks(client, marks)
    with patched(client):
        entries, _ = prices.current_prices(set(marks), last_for=set(), now=timezone.now())
    plans = {}
    for name, sql, params in (
        ("symbols", SYMBOLS_SQL, None),
        ("triggers", TRIGGER_SEARCH_SQL, [list(c) for c in zip(*trigger_probes(entries), strict=True)]),
        ("liquidations", LIQUIDATION_SEARCH_SQL, [list(c) for c in zip(*liquidation_probes(entries), strict=True)]),
    ):
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params)
            plans[name] = "\n".join(row[0] for row in cursor.fetchall())
    return plans


# --------------------------------------------------------------------------- worker processes


def worker_main(shard: int, shards: int, marks_file: str, symbol_count: int) -> None:
    """One worker process: warm up, say READY, wait for GO, sweep its shard, print the report."""
    client, _symbols, base = market(symbol_count)
    per_symbol = int(sys.stdin.readline())
    warm(client, base, per_symbol, shard=shard, shards=shards)
    marks = {s: Decimal(v) for s, v in json.loads(Path(marks_file).read_text()).items()}
    set_marks(client, marks)
    print("READY", flush=True)
    sys.stdin.readline()
    with patched(client):
        started = time.perf_counter()
        report = sweep.sweep_paper_triggers(shard=shard, shards=shards)
        elapsed = time.perf_counter() - started
    result = {"seconds": elapsed, "detect": report.detect_seconds, "triggered": report.triggered}
    print("RESULT " + json.dumps(result | {"filled": report.filled}), flush=True)


def run_workers(count: int, marks: dict[str, Decimal], per_symbol: int, symbol_count: int) -> dict[str, Any]:
    marks_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-sweep-marks-{os.getpid()}.json"
    marks_file.write_text(json.dumps({s: str(v) for s, v in marks.items()}))
    here = Path(__file__).resolve()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(here),
                "--worker",
                f"{shard}/{count}",
                "--marks",
                str(marks_file),
                "--symbols",
                str(symbol_count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=here.parent,
        )
        for shard in range(count)
    ]
    for proc in procs:
        assert proc.stdin and proc.stdout
        proc.stdin.write(f"{per_symbol}\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.stdout
        while (line := proc.stdout.readline()) and line.strip() != "READY":
            pass
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin
        proc.stdin.write("GO\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        assert proc.stdout
        for line in proc.stdout:
            if line.startswith("RESULT "):
                results.append(json.loads(line[len("RESULT ") :]))
                break
    wall = time.perf_counter() - started
    for proc in procs:
        proc.wait(timeout=60)
    marks_file.unlink(missing_ok=True)
    restore()
    return {"wall": wall, "filled": sum(r["filled"] for r in results), "results": results}


# --------------------------------------------------------------------------- main


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,300000,1000000")
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fixed", type=int, default=1000, help="the fixed triggered count")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts over the largest size ('' = none)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--marks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        shard, shards = (int(x) for x in args.worker.split("/"))
        worker_main(shard, shards, args.marks, args.symbols)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    client, symbols, base = market(args.symbols)
    results: dict[int, dict[str, list[dict[str, float]]]] = {}
    for size in sizes:
        seconds = seed(size, symbols, base)
        per_symbol = size // 2 // len(symbols)
        print(f"seeded {size:,} pending orders ({size // 2:,} positions, {len(symbols)} symbols) in {seconds:.1f} s")
        warm(client, base, per_symbol)
        variants = {"1%": size // 100, "fixed": min(args.fixed, size // 2)}
        results[size] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, triggered in variants.items():  # interleaved
                results[size][name].append(run_sweep(client, trigger_marks(base, per_symbol, triggered)))
        for name, triggered in variants.items():
            runs = results[size][name]
            print(
                f"  {size:>9,} pending, {triggered:>6,} triggered ({name:>5}): whole {median(runs, 'whole'):6.3f} s "
                f"= detect+claim {median(runs, 'detect'):6.3f} s + fills {median(runs, 'fills'):6.3f} s "
                f"(filled {int(runs[-1]['filled'])}, median of {len(runs)})"
            )
            label = "1 % triggered" if name == "1%" else f"{triggered:,} triggered"
            emit_row(
                bench="sweep",
                figure=f"whole sweep, {size:,} pending, {label}",
                value=median(runs, "whole"),
                unit="s",
                **(
                    {"target": "< 1 s", "met": median(runs, "whole") < 1}
                    if size == 100_000 and name == "fixed" and triggered == 1000
                    else {}
                ),
            )
            emit_row(
                bench="sweep", figure=f"detect+claim, {size:,} pending, {label}", value=median(runs, "detect"), unit="s"
            )
        if args.explain:
            for name, triggered in variants.items():
                for search, plan in explain(client, trigger_marks(base, per_symbol, triggered)).items():
                    print(f"  plan of the {search} search at {size:,} pending ({triggered:,} triggered, {name}):")
                    print("    " + plan.replace("\n", "\n    "))
    if 100_000 in results and 1_000_000 in results:
        small, large = median(results[100_000]["fixed"], "detect"), median(results[1_000_000]["fixed"], "detect")
        print(f"detect+claim growth 100k -> 1M pending, {args.fixed:,} triggered: {large / small:.2f}x (target <= 2x)")
        emit_row(
            bench="sweep",
            figure=f"detect+claim growth 100k -> 1M pending ({args.fixed:,} triggered)",
            value=large,
            unit="s",
            ratio=large / small,
            ratio_of="100k pending",
            target="<= 2x",
            met=large / small <= 2,
        )
    counts = [int(c) for c in args.workers.split(",") if c]
    if counts:
        size = sizes[-1]
        per_symbol = size // 2 // len(symbols)
        seed_seconds = seed(size, symbols, base) if sizes[-1] != size else 0.0
        del seed_seconds
        marks = trigger_marks(base, per_symbol, size // 100)
        walls = {}
        for count in counts:
            run = run_workers(count, marks, per_symbol, args.symbols)
            walls[count] = run["wall"]
            print(
                f"  {count} worker process(es), {size:,} pending, 1 % triggered: {run['wall']:.3f} s "
                f"(filled {run['filled']}; per worker, whole / detect+claim: "
                f"{[(round(r['seconds'], 2), round(r['detect'], 2)) for r in run['results']]})"
            )
        for count in counts:
            ratio = walls[counts[0]] / walls[count]
            extra = {"target": ">= 2.5x on 4 cores", "met": ratio >= 2.5} if count == 4 else {}
            emit_row(
                bench="sweep",
                figure=f"whole sweep, {size:,} pending, 1 % triggered, {count} worker processes",
                value=walls[count],
                unit="s",
                ratio=ratio,
                ratio_of=f"{counts[0]} worker",
                **extra,
            )
        print(f"  this machine has {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
