"""Decision-to-wire latency of a live market order against the simulator, next to a bare
signed request of the same order. PostgreSQL (DATABASE_URL, default .../bench).

    .venv/bin/python bench/live.py [--orders 200]

"Wire" is the moment the order's POST is handed to the HTTP session. Before it, the service
fetches the mark price and the balance (two round trips), runs the reserve transaction, and
signs; the bare request only signs.
"""

from __future__ import annotations

import argparse
import os
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

from accounts.models import Account  # noqa: E402
from execution.aster.simulator.demo_accounts import DEMO_V1  # noqa: E402
from execution.services import ExecutionService  # noqa: E402
from execution.services.adapters.live import LiveExecutionAdapter  # noqa: E402
from execution.services.exchange import reset_exchange_clients  # noqa: E402


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
        to_wire, total = [], []
        for i in range(args.orders + 20):
            started = time.perf_counter()
            service.execute_market_order(
                symbol="BTCUSDT", side="BUY" if i % 2 == 0 else "SELL", quantity=Decimal("0.01"), leverage=5
            )
            if i >= 20:  # warm-up done
                to_wire.append(wire[-1] - started)
                total.append(time.perf_counter() - started)
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
    print(f"decision-to-wire (service)   {summary(to_wire)}")
    print(f"bare signed request to wire  {summary(bare)}")
    p50 = (sorted(to_wire)[len(to_wire) // 2] - sorted(bare)[len(bare) // 2]) * 1000
    print(f"overhead p50: {p50:.2f} ms (target <= 5 ms)")
    print(f"whole order, call to booked fill {summary(total)}")
    reset_tables()


if __name__ == "__main__":
    main()
