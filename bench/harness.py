"""Shared bench plumbing: Django set-up, a simulator in its own process, timing summaries."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()


def ensure_database() -> None:
    """The bench's PostgreSQL database (DATABASE_URL's name), created if missing."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def simulator_process(*, extra_symbols: int = 0, tick_seconds: float = 0) -> Iterator[str]:
    """`manage.py aster_sim` in a separate process (so it does not share our GIL)."""
    port = free_port()
    command = [
        sys.executable,
        "manage.py",
        "aster_sim",
        "--port",
        str(port),
        "--tick-seconds",
        str(tick_seconds),
        "--extra-symbols",
        str(extra_symbols),
    ]
    env = {**os.environ, "DEBUG": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the simulator did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"mean {statistics.mean(ms):7.3f} ms  p50 {percentile(ms, 50):7.3f} ms  "
        f"p99 {percentile(ms, 99):7.3f} ms  (n={len(ms)})"
    )


# `make bench` (bench/all.py) runs every bench as its own process and collects these lines into one
# table. A bench prints one `BENCH_ROW {json}` line per figure it reports, besides its own text:
#   {"bench": "paper", "figure": "paper order p50", "value": 4.2, "unit": "ms",
#    "ratio": 2.7, "ratio_of": "raw floor p50", "target": "<= 3x", "met": true}
# `ratio`, `ratio_of`, `target` and `met` are optional.
BENCH_ROW_PREFIX = "BENCH_ROW "


def emit_row(
    *,
    bench: str,
    figure: str,
    value: float,
    unit: str,
    ratio: float | None = None,
    ratio_of: str | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> None:
    import json

    row = {"bench": bench, "figure": figure, "value": round(value, 4), "unit": unit}
    if ratio is not None:
        row["ratio"] = round(ratio, 3)
        row["ratio_of"] = ratio_of
    if target is not None:
        row["target"] = target
        row["met"] = met
    print(BENCH_ROW_PREFIX + json.dumps(row), flush=True)
