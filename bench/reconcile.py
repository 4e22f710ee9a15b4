"""Reconciling many live accounts against the simulator (in its own process), PostgreSQL.

    .venv/bin/python bench/reconcile.py [--accounts 1000] [--positions 3]

Prints the time to reconcile every account when nothing differs, and the HTTP requests and
request weight per account. The simulator does not enforce the weight limit; the real
exchange allows 2400 per minute per IP, which this prints against.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from decimal import Decimal

import requests

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.setdefault("ASTER_WEIGHT_LIMIT_1M", "100000000")  # measure the work, not the throttle

from harness import emit_row, setup_django, simulator_process
from paper import ensure_database, reset_tables

ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.models import Position  # noqa: E402
from execution.services.exchange import reset_exchange_clients  # noqa: E402
from execution.services.reconciliation import reconcile_account  # noqa: E402

SYMBOLS = [("BTCUSDT", "0.01"), ("ETHUSDT", "0.1"), ("SOLUSDT", "1"), ("ASTERUSDT", "100")]
WEIGHT_PER_RUN = 5 + 40  # positionRisk + openOrders for all symbols


def seed(url: str, accounts: int, positions: int) -> list[Account]:
    session = requests.Session()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    rows = []
    for index in range(accounts):
        key, secret = f"benchkey{index:05d}", f"benchsecret{index:05d}"
        session.post(
            f"{url}/_sim/accounts", json={"name": f"a{index}", "api_key": key, "api_secret": secret}, timeout=10
        ).raise_for_status()
        for symbol, quantity in SYMBOLS[:positions]:
            session.post(
                f"{url}/_sim/orders",
                json={"account": f"a{index}", "symbol": symbol, "side": "BUY", "type": "MARKET", "quantity": quantity},
                timeout=10,
            ).raise_for_status()
        rows.append(
            Account(
                owner=owner, name=f"a{index}", is_paper_trading=False, api_version="v1", api_key=key, api_secret=secret
            )
        )
    created = Account.objects.bulk_create(rows)
    state = session.get(f"{url}/_sim/state", timeout=60).json()["accounts"]
    Position.objects.bulk_create(
        Position(
            account=account,
            symbol=symbol,
            side="LONG",
            quantity=Decimal(held["amount"]),
            entry_price=Decimal(held["entry"]),
            leverage=20,
        )
        for account in created
        for symbol, held in state[account.name]["positions"].items()
    )
    return created


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=3)
    args = parser.parse_args()
    reset_tables()
    with simulator_process(tick_seconds=0) as url:
        settings.ASTER_BASE_URL = url
        reset_exchange_clients()
        started = time.perf_counter()
        accounts = seed(url, args.accounts, args.positions)
        print(f"seeded {len(accounts)} accounts x {args.positions} positions in {time.perf_counter() - started:.1f} s")
        durations, calls, statuses = [], [], {}
        started = time.perf_counter()
        for account in accounts:
            t0 = time.perf_counter()
            run = reconcile_account(account)
            durations.append(time.perf_counter() - t0)
            calls.append(run.http_calls)
            statuses[str(run.status)] = statuses.get(str(run.status), 0) + 1
        total = time.perf_counter() - started
    print(
        f"reconciled {len(accounts)} accounts in {total:.2f} s "
        f"({statistics.mean(durations) * 1000:.1f} ms per account, p50 {statistics.median(durations) * 1000:.1f} ms)"
    )
    print(f"outcomes: {statuses}")
    print(f"HTTP requests per account: mean {statistics.mean(calls):.2f}, max {max(calls)} (target <= 2 when in sync)")
    emit_row(
        bench="reconcile",
        figure=f"reconcile one in-sync account ({len(accounts):,} accounts, p50)",
        value=statistics.median(durations) * 1000,
        unit="ms",
    )
    emit_row(
        bench="reconcile",
        figure="HTTP requests per in-sync account (max)",
        value=max(calls),
        unit="requests",
        target="<= 2",
        met=max(calls) <= 2,
    )
    per_minute = 2400 // WEIGHT_PER_RUN
    print(
        f"request weight per account: {WEIGHT_PER_RUN}; the exchange's 2400/min per IP allows {per_minute} "
        f"accounts per minute per IP, so {len(accounts)} accounts need {len(accounts) / per_minute:.0f} IP-minutes"
    )
    reset_tables()


if __name__ == "__main__":
    main()
