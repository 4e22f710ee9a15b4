"""What parity costs a live order: decision-to-wire and the whole order with parity on and off,
interleaved order by order in one process (the same machine noise for both), against the
simulator in its own process. PostgreSQL (DATABASE_URL, default .../bench_parity); the price
cache in Redis when REDIS_URL is set (a feeder writes the simulator's marks every second, as
the stream process does), so this is the order path as it runs in production.

    .venv/bin/python bench/parity.py [--orders 200]

"Wire" is the moment the order's POST is handed to the HTTP session (as in bench/live.py).
With parity on, the book read is handed to a warm worker thread before the order's set-up and
send, and joined (then the record written) after the fill was booked and its stop-loss placed:
the first shows in decision-to-wire, the second only in the whole order. "Fill to protection"
is from the market order's reply to the stop-loss POST handed to the session: the part of the
order path the old design made wait for the book. Also printed: how long the join and write
took, how often the join had to wait for the book, and the book's age against the send.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from decimal import Decimal
from typing import Any

os.environ.setdefault("ASTER_WEIGHT_LIMIT_1M", "100000")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_parity")

from harness import emit_row, percentile, setup_django, simulator_process, summary
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
from execution.models import ParityRecord  # noqa: E402
from execution.services import (  # noqa: E402
    ExecutionService,
    orders,
    price_cache,
)
from execution.services.adapters.live import LiveExecutionAdapter  # noqa: E402
from execution.services.exchange import public_client, reset_exchange_clients  # noqa: E402
from execution.services.parity import market_orders  # noqa: E402

BENCH = "parity"
WARM_UP = 20


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


def live_account() -> Account:
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    return Account.objects.create(
        owner=owner,
        name="bench-parity",
        is_paper_trading=False,
        api_version="v1",
        api_key=DEMO_V1["api_key"],
        api_secret=DEMO_V1["api_secret"],
    )


def ms(samples: list[float]) -> float:
    return percentile([s * 1000 for s in samples], 50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200, help="orders per setting (on and off), interleaved")
    args = parser.parse_args()
    reset_tables()
    with simulator_process() as url:
        settings.ASTER_BASE_URL = url
        reset_exchange_clients()
        cache.clear()
        account = live_account()
        adapter = LiveExecutionAdapter(account)
        adapter.client.sync_time()
        wire: list[float] = []
        send = adapter.client.session.request

        filled: list[float] = []
        protected: list[float] = []

        def timed_request(method: str, url: str, **kwargs: Any) -> Any:
            is_order = method == "POST" and url.endswith("/order")
            stop = is_order and "STOP_MARKET" in str(kwargs.get("data") or kwargs.get("params") or "")
            if is_order:
                (protected if stop else wire).append(time.perf_counter())
            reply = send(method, url, **kwargs)
            if is_order and not stop:
                filled.append(time.perf_counter())
            return reply

        adapter.client.session.request = timed_request  # type: ignore[method-assign]
        after_fill: list[float] = []
        waited = 0
        joined = market_orders._joined

        def timed_join(shadow: Any) -> Any:  # the join, after the protection
            nonlocal waited
            waited += shadow.future is not None and not shadow.future.done()
            return joined(shadow)

        record = orders.record_parked_shadow

        def timed_record(**kwargs: Any) -> Any:  # the join and the write, after the protection
            started = time.perf_counter()
            try:
                return record(**kwargs)
            finally:
                if settings.PARITY_ENABLED:
                    after_fill.append(time.perf_counter() - started)

        market_orders._joined = timed_join  # type: ignore[assignment]
        orders.record_parked_shadow = timed_record  # type: ignore[assignment]
        service = ExecutionService(account, adapter=adapter)
        stop = threading.Event()
        feeder = threading.Thread(target=feed_marks, args=(stop,), daemon=True)
        feeder.start()
        time.sleep(0.5)  # the first batch of marks is in
        results: dict[bool, tuple[list[float], list[float], list[float]]] = {
            True: ([], [], []),
            False: ([], [], []),
        }
        try:
            for i in range(2 * (args.orders + WARM_UP)):
                # Orders come in same-side pairs (the first opens or closes, the second adds or
                # closes the rest): which setting goes first alternates every two pairs.
                on = (i % 2 == 0) == ((i // 4) % 2 == 0)
                settings.PARITY_ENABLED = on
                started = time.perf_counter()
                buy = (i // 2) % 2 == 0
                service.execute_market_order(
                    symbol="BTCUSDT",
                    side="BUY" if buy else "SELL",
                    quantity=Decimal("0.01"),
                    leverage=5,
                    stop_loss=Decimal("60000") if buy else None,  # the entry is protected; the close is not
                )
                if i >= 2 * WARM_UP:
                    results[on][0].append(wire[-1] - started)
                    results[on][1].append(time.perf_counter() - started)
                    if buy:
                        results[on][2].append(protected[-1] - filled[-1])
        finally:
            stop.set()
            feeder.join()
        records = list(ParityRecord.objects.filter(account=account).values_list("book_age_ms", "stale"))
    report(results, after_fill[WARM_UP:], waited, records)
    reset_tables()


def report(
    results: dict[bool, tuple[list[float], list[float], list[float]]],
    after_fill: list[float],
    waited: int,
    records: list[tuple[int | None, bool]],
) -> None:
    (on_wire, on_total, on_protect), (off_wire, off_total, off_protect) = results[True], results[False]
    print(f"decision-to-wire, parity off  {summary(off_wire)}")
    print(f"decision-to-wire, parity on   {summary(on_wire)}")
    print(f"fill to protection, off       {summary(off_protect)}")
    print(f"fill to protection, on        {summary(on_protect)}")
    print(f"whole order, parity off       {summary(off_total)}")
    print(f"whole order, parity on        {summary(on_total)}")
    print(f"after the protection: join + record {summary(after_fill)}; the join waited for the book {waited} times")
    ages = sorted(age for age, _stale in records if age is not None)
    stale = sum(1 for _age, is_stale in records if is_stale)
    if ages:
        print(
            f"book age against the send: p50 {percentile([float(a) for a in ages], 50):.0f} ms, "
            f"min {ages[0]} ms, max {ages[-1]} ms; {stale} of {len(records)} records stale "
            f"(bound {settings.PARITY_MAX_BOOK_AGE_MS} ms)"
        )
    noise = statistics.pstdev([s * 1000 for s in off_wire]) / max(len(off_wire), 1) ** 0.5
    wire_delta = ms(on_wire) - ms(off_wire)
    print(f"decision-to-wire p50 difference: {wire_delta:+.3f} ms (standard error of the off mean {noise:.3f} ms)")
    emit_row(bench=BENCH, figure="decision-to-wire p50, parity off", value=ms(off_wire), unit="ms")
    emit_row(
        bench=BENCH,
        figure="decision-to-wire p50, parity on",
        value=ms(on_wire),
        unit="ms",
        ratio=ms(on_wire) / ms(off_wire),
        ratio_of="decision-to-wire p50, parity off",
        target="unchanged within noise (<= +0.5 ms)",
        met=wire_delta <= 0.5,
    )
    emit_row(bench=BENCH, figure="fill to protection p50, parity off", value=ms(off_protect), unit="ms")
    protect_delta = ms(on_protect) - ms(off_protect)
    emit_row(
        bench=BENCH,
        figure="fill to protection p50, parity on",
        value=ms(on_protect),
        unit="ms",
        ratio=ms(on_protect) / ms(off_protect),
        ratio_of="fill to protection p50, parity off",
        target="unchanged within noise (<= +0.5 ms)",
        met=protect_delta <= 0.5,
    )
    emit_row(bench=BENCH, figure="whole order p50, parity off", value=ms(off_total), unit="ms")
    emit_row(
        bench=BENCH,
        figure="whole order p50, parity on",
        value=ms(on_total),
        unit="ms",
        ratio=ms(on_total) / ms(off_total),
        ratio_of="whole order p50, parity off",
    )
    emit_row(bench=BENCH, figure="after-protection join + record p50", value=ms(after_fill), unit="ms")
    emit_row(bench=BENCH, figure="joins that waited for the book", value=float(waited), unit="orders")
    if ages:
        emit_row(bench=BENCH, figure="book age p50", value=percentile([float(a) for a in ages], 50), unit="ms")
        emit_row(bench=BENCH, figure="stale shadows", value=float(stale), unit="records")


if __name__ == "__main__":
    main()
