"""Decision-to-wire latency of a live market order against the simulator, next to a bare
signed request of the same order. PostgreSQL (DATABASE_URL, default .../bench); the price
cache in Redis when REDIS_URL is set, else in the table.

    .venv/bin/python bench/live.py [--orders 200]

"Wire" is the moment the order's POST is handed to the HTTP session. Two runs:
- without the cache: the service fetches the mark price (premiumIndex) and the balance (two
  round trips) for every order, runs the reserve transaction, and signs;
- with the cache: a feeder thread writes the simulator's marks into the price cache every
  second (what the stream process does), so the mark comes from the cache, and the balance is
  reused for LIVE_BALANCE_CACHE_SECONDS.
The bare request only signs.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from decimal import Decimal

# 200 orders in well under a minute: the per-IP weight budget models the real exchange, not this run.
os.environ.setdefault("ASTER_WEIGHT_LIMIT_1M", "100000")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")

from harness import setup_django, simulator_process, summary
from paper import ensure_database, reset_tables

ensure_database()
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.demo_accounts import DEMO_V1  # noqa: E402
from execution.aster.streams.frames import MarkPriceUpdate  # noqa: E402
from execution.models import PriceCacheEntry  # noqa: E402
from execution.services import ExecutionService, price_cache  # noqa: E402
from execution.services.adapters.live import LiveExecutionAdapter  # noqa: E402
from execution.services.exchange import public_client, reset_exchange_clients  # noqa: E402


def feed_marks(stop: threading.Event) -> None:
    """The stream process's part: the simulator's marks into the price cache every second."""
    client = public_client()
    try:
        while not stop.is_set():
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
            price_cache.store_marks(updates, received_at=timezone.now())
            stop.wait(1.0)
    finally:
        connection.close()


def clear_price_cache() -> None:
    if settings.REDIS_URL:
        price_cache._redis().delete(price_cache.REDIS_INDEX, *price_cache._redis().keys(price_cache.REDIS_PREFIX + "*"))
    PriceCacheEntry.objects.all().delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    reset_tables()
    with simulator_process() as url:
        settings.ASTER_BASE_URL = url
        reset_exchange_clients()
        owner, _ = get_user_model().objects.get_or_create(username="bench")
        account = Account.objects.create(
            owner=owner,
            name="bench-live",
            is_paper_trading=False,
            api_version="v1",
            api_key=DEMO_V1["api_key"],
            api_secret=DEMO_V1["api_secret"],
        )
        adapter = LiveExecutionAdapter(account)
        adapter.client.sync_time()
        wire: list[float] = []
        send = adapter.client.session.request

        def timed_request(method, url, **kwargs):  # the moment the order is handed to the session
            if method == "POST" and url.endswith("/order"):
                wire.append(time.perf_counter())
            return send(method, url, **kwargs)

        adapter.client.session.request = timed_request  # type: ignore[method-assign]
        service = ExecutionService(account, adapter=adapter)

        def run() -> tuple[list[float], list[float]]:
            to_wire, total = [], []
            for i in range(args.orders + 20):
                started = time.perf_counter()
                service.execute_market_order(
                    symbol="BTCUSDT", side="BUY" if i % 2 == 0 else "SELL", quantity=Decimal("0.01"), leverage=5
                )
                if i >= 20:  # warm-up done
                    to_wire.append(wire[-1] - started)
                    total.append(time.perf_counter() - started)
            return to_wire, total

        clear_price_cache()
        balance_lifetime = settings.LIVE_BALANCE_CACHE_SECONDS
        settings.LIVE_BALANCE_CACHE_SECONDS = 0
        rest_to_wire, rest_total = run()
        settings.LIVE_BALANCE_CACHE_SECONDS = balance_lifetime
        cache.clear()
        stop = threading.Event()
        feeder = threading.Thread(target=feed_marks, args=(stop,), daemon=True)
        feeder.start()
        time.sleep(0.5)  # the first batch is in
        try:
            to_wire, total = run()
        finally:
            stop.set()
            feeder.join()
        clear_price_cache()
        signer = adapter.client._signer
        assert signer is not None
        bare = []
        params = [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.01"),
            ("newClientOrderId", "bare-1"),
            ("newOrderRespType", "RESULT"),
        ]
        for _ in range(args.orders):
            started = time.perf_counter()
            signed = signer.sign(params)
            headers = {**signed.headers, "Content-Type": "application/x-www-form-urlencoded"}
            bare.append(time.perf_counter() - started)
            del headers
    bare_p50 = sorted(bare)[len(bare) // 2]
    print(f"bare signed request to wire        {summary(bare)}")
    print(f"decision-to-wire, REST mark+balance {summary(rest_to_wire)}")
    print(f"decision-to-wire, price cache       {summary(to_wire)}")
    before = (sorted(rest_to_wire)[len(rest_to_wire) // 2] - bare_p50) * 1000
    after = (sorted(to_wire)[len(to_wire) // 2] - bare_p50) * 1000
    print(f"overhead p50: {before:.2f} ms without the cache, {after:.2f} ms with it (target <= 5 ms)")
    print(f"whole order, REST   {summary(rest_total)}")
    print(f"whole order, cache  {summary(total)}")
    reset_tables()


if __name__ == "__main__":
    main()
