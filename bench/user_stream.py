"""User-data streams: how fast a TP fired on the exchange is booked, how many events one stream
process applies per second, and what 500 live accounts' streams cost in one process.

    .venv/bin/python bench/user_stream.py [--accounts 500] [--latency-accounts 10] [--rounds 5]

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_userstream, created
if missing and emptied). The simulator runs in its own process (`aster_sim`, REST + WebSocket),
and so does the stream process (`aster_stream --only user`), so the CPU and memory printed are
the stream process's alone. The bench process drives the order path (positions with TP/SL, over
REST) and the exchange's prices (`/_sim/price`), and reads the database.

1. start: every account connected and reconciled once (the reconciliation on connect);
2. idle: CPU and memory of the stream process holding every account's socket, nothing happening;
3. latency: rounds of `--latency-accounts` TPs fired by one price move; time from the move to the
   closing trade committed (its `created_at`, the database's clock on this host), p50 / p95;
4. burst: every account's TP fired by one price move; events the process applied per second
   (the simulator's user-data frames sent, over the time until every closing trade is booked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_userstream")
os.environ.setdefault("ASTER_WEIGHT_LIMIT_1M", "100000000")  # measure the work, not the throttle
# The stream process runs as in production (DEBUG off: no query log), with keys of its own,
# shared with this process so that it can read the credentials this one stores.
os.environ.setdefault("SECRET_KEY", "bench-user-stream-not-a-secret")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Wb2Yv0vA3m0P7bn2bq1s9o3b4Zl5Y8rT6Kx1uQeJm0c=")

from harness import ROOT, emit_row, ensure_database, percentile, setup_django, simulator_process

ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.models import StreamStatus, Trade  # noqa: E402
from execution.services import ExecutionService  # noqa: E402
from execution.services.exchange import reset_exchange_clients  # noqa: E402

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def reset_tables() -> None:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE execution_executionevent, execution_exchangefill, execution_pendingorder, execution_trade, "
            "execution_position, execution_reconciliationitem, execution_reconciliationrun, execution_streamlease, "
            "execution_streamstatus, decisions_decision, accounts_account RESTART IDENTITY CASCADE"
        )


def seed(url: str, count: int) -> list[Account]:
    session = requests.Session()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    accounts = []
    for index in range(count):
        key, secret = f"ubenchkey{index:05d}", f"ubenchsecret{index:05d}"
        session.post(
            f"{url}/_sim/accounts",
            json={"name": f"u{index}", "api_key": key, "api_secret": secret, "balance": "1000000"},
            timeout=10,
        ).raise_for_status()
        accounts.append(
            Account(
                owner=owner,
                name=f"u{index}",
                is_paper_trading=False,
                api_version="v1",
                api_key=key,
                api_secret=secret,
                max_leverage=20,
            )
        )
    return Account.objects.bulk_create(accounts)


class StreamProcess:
    """`manage.py aster_stream --only user` in its own process; CPU and memory from /proc."""

    def __init__(self, ws_url: str, base_url: str) -> None:
        env = {**os.environ, "DEBUG": "0", "ASTER_WS_URL": ws_url, "ASTER_BASE_URL": base_url}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "aster_stream", "--only", "user"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def open_positions(accounts: list[Account], symbol: str, quantity: str, take_profit: str, stop_loss: str) -> None:
    def open_one(account: Account) -> None:
        try:
            ExecutionService(account, sleep=lambda s: None).execute_market_order(
                symbol=symbol, side="BUY", quantity=quantity, leverage=5, take_profit=take_profit, stop_loss=stop_loss
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(open_one, accounts))


def set_price(url: str, symbol: str, price: str) -> float:
    fired = time.time()
    requests.post(f"{url}/_sim/price", json={"symbol": symbol, "price": price}, timeout=10).raise_for_status()
    return fired


def frames_sent(url: str) -> int:
    return int(requests.get(f"{url}/_sim/ws/state", timeout=10).json()["frames_sent"])


def booked_at(accounts: list[Account], symbol: str, since: datetime) -> dict[int, datetime]:
    rows = Trade.objects.filter(
        account__in=accounts, symbol=symbol, reason="take_profit", created_at__gte=since
    ).values_list("account_id", "created_at")
    booked: dict[int, datetime] = {}
    for account_id, created in rows:
        booked.setdefault(account_id, created)
    return booked


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def latency_rounds(url: str, accounts: list[Account], rounds: int) -> list[float]:
    """Rounds of TPs fired by one ETH price move; seconds from the move to each closing trade."""
    samples: list[float] = []
    for _round in range(rounds):
        set_price(url, "ETHUSDT", "3500")
        open_positions(accounts, "ETHUSDT", "1", take_profit="3600", stop_loss="3000")
        time.sleep(2.5)  # let the entries' events settle
        since = datetime.now(UTC)
        fired = set_price(url, "ETHUSDT", "3650")
        wait_until(
            lambda since=since: len(booked_at(accounts, "ETHUSDT", since)) == len(accounts),
            "the take-profits to be booked",
            timeout=60,
        )
        samples += [t.timestamp() - fired for t in booked_at(accounts, "ETHUSDT", since).values()]
    return samples


def burst(url: str, stream: StreamProcess, accounts: list[Account]) -> None:
    """Every account's TP fired by one BTC price move: events applied per second."""
    set_price(url, "BTCUSDT", "65000")
    open_positions(accounts, "BTCUSDT", "0.01", take_profit="66000", stop_loss="60000")
    time.sleep(3)
    sent_before, cpu_before = frames_sent(url), stream.cpu_seconds()
    since = datetime.now(UTC)
    fired = set_price(url, "BTCUSDT", "66500")
    took = wait_until(
        lambda: len(booked_at(accounts, "BTCUSDT", since)) == len(accounts),
        "every take-profit of the burst to be booked",
        timeout=600,
    )
    time.sleep(1)
    events = frames_sent(url) - sent_before
    samples = [t.timestamp() - fired for t in booked_at(accounts, "BTCUSDT", since).values()]
    cpu = stream.cpu_seconds() - cpu_before
    print(
        f"burst: {len(accounts)} TPs fired by one price move, all booked in {took:.1f} s: {events} events, "
        f"{events / took:.0f} events/s applied by one process (CPU {cpu:.1f} s, {cpu / events * 1000:.1f} ms/event); "
        f"per TP p50 {ms(percentile(samples, 50))} p95 {ms(percentile(samples, 95))}"
    )
    print(f"memory after the burst: RSS {stream.rss_mb():.0f} MB")
    n = len(accounts)
    emit_row(
        bench="user_stream", figure=f"burst of {n} TPs: events applied per second", value=events / took, unit="events/s"
    )
    emit_row(bench="user_stream", figure=f"burst of {n} TPs: per TP p50", value=percentile(samples, 50), unit="s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--latency-accounts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    reset_tables()
    with simulator_process(tick_seconds=0) as url:
        ws_url = requests.get(f"{url}/_sim/ws/state", timeout=10).json()["url"]
        settings.ASTER_BASE_URL, settings.ASTER_WS_URL = url, ws_url
        reset_exchange_clients()
        accounts = seed(url, args.accounts)
        print(f"{len(accounts)} live accounts (V1) on the simulator; stream process: aster_stream --only user")
        stream = StreamProcess(ws_url, url)
        try:
            started = wait_until(
                lambda: StreamStatus.objects.filter(kind="user", connected=True).count() >= len(accounts),
                "every account's stream to connect",
                timeout=120 + len(accounts) * 0.5,
            )
            print(f"start: {len(accounts)} streams connected and reconciled in {started:.1f} s")
            emit_row(bench="user_stream", figure=f"start: {len(accounts)} streams connected", value=started, unit="s")
            cpu_before, wall_before = stream.cpu_seconds(), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (stream.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before) * 100
            print(
                f"idle: {len(accounts)} user-data streams: CPU {idle:.1f} % of one core, RSS {stream.rss_mb():.0f} MB"
            )
            emit_row(
                bench="user_stream", figure=f"idle CPU, {len(accounts)} user-data streams", value=idle, unit="% core"
            )
            samples = latency_rounds(url, accounts[: args.latency_accounts], args.rounds)
            print(
                f"latency: TP fired on the exchange -> closing trade committed: p50 {ms(percentile(samples, 50))} "
                f"p95 {ms(percentile(samples, 95))} max {ms(max(samples))} (n={len(samples)}; target p50 <= 1 s)"
            )
            p50 = percentile(samples, 50)
            emit_row(
                bench="user_stream",
                figure="TP fired on the exchange -> closing trade committed, p50",
                value=p50 * 1000,
                unit="ms",
                target="<= 1 s",
                met=p50 <= 1,
            )
            burst(url, stream, accounts)
        finally:
            stream.stop()


if __name__ == "__main__":
    main()
