"""The service's Prometheus series: one place that names them, so that a dashboard and an
alert rule can rely on the names (`execution_` prefix, base units, `_total` for counters).

Counters and histograms are moved by the code that does the work (order path, sweep,
reconciliation, streams, alerts). Gauges that describe the database (accounts by trading
state, open positions, unknown intents) are computed when Prometheus scrapes, by
`execution.services.health.DatabaseCollector`, so they are true whichever process changed the rows.

Processes: the web process serves `/metrics`. Workers and the stream process either share a
`PROMETHEUS_MULTIPROC_DIR` with it on one machine (their series then appear in the web
process's `/metrics`), or each serve their own on `METRICS_PORT` (docs/operations.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from execution.services.paper.sweep import SweepReport

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ORDERS = Counter("execution_orders", "Orders by mode and outcome.", ["mode", "outcome"])
DENIALS = Counter("execution_order_denials", "Refused orders by denial code.", ["code"])
ORDER_STAGE_SECONDS = Histogram(
    "execution_order_stage_seconds", "Order path time by stage.", ["stage"], buckets=STAGE_BUCKETS
)
SWEEP_SECONDS = Histogram(
    "execution_paper_sweep_seconds", "Paper sweep (or stream reaction) duration.", ["source"], buckets=STAGE_BUCKETS
)
TRIGGERS_CLAIMED = Counter("execution_paper_triggers_claimed", "Paper TP/SL triggers claimed.", ["source"])
TRIGGERS_FILLED = Counter("execution_paper_triggers_filled", "Paper TP/SL triggers filled.", ["source"])
FILL_PATH_FALLBACKS = Counter(
    "execution_fill_path_fallbacks", "Accounts whose batched paper fills failed and were filled one by one."
)
RECONCILIATION_RUNS = Counter("execution_reconciliation_runs", "Reconciliation runs by status.", ["status"])
RECONCILIATION_DIFFERENCES = Counter(
    "execution_reconciliation_differences", "Differences found by reconciliation, by kind.", ["kind"]
)
STREAM_LAG_SECONDS = Gauge(
    "execution_stream_lag_seconds",
    "Receipt time minus the exchange's event time, last frame (by stream kind: market, user).",
    ["kind"],
    multiprocess_mode="max",
)
STREAM_RECONNECTS = Counter("execution_stream_reconnects", "Stream reconnects, by stream kind.", ["kind"])
STREAM_FRAMES_DROPPED = Counter(
    "execution_stream_frames_dropped", "Stream frames or items dropped as bad, by stream kind.", ["kind"]
)
ALERT_DELIVERIES = Counter("execution_alert_deliveries", "Alert deliveries by outcome.", ["outcome"])
PARITY_FAILURES = Counter("execution_parity_failures", "Parity shadows not recorded, by stage.", ["stage"])


@contextmanager
def stage_timer(stage: str) -> Iterator[None]:
    """Time one stage of the order path (reserve, exchange, apply, protect), failures included."""
    started = time.perf_counter()
    try:
        yield
    finally:
        ORDER_STAGE_SECONDS.labels(stage=stage).observe(time.perf_counter() - started)


@contextmanager
def order_outcome_metrics(mode: str) -> Iterator[None]:
    """Count one order by its outcome: filled, denied (and the code), rejected, unknown, failed."""
    from execution.exceptions import ExecutionError, OrderOutcomeUnknown, RiskCheckFailed

    try:
        yield
    except RiskCheckFailed as denial:
        ORDERS.labels(mode=mode, outcome="denied").inc()
        DENIALS.labels(code=denial.code).inc()
        raise
    except OrderOutcomeUnknown:
        ORDERS.labels(mode=mode, outcome="unknown").inc()
        raise
    except ExecutionError:
        ORDERS.labels(mode=mode, outcome="rejected").inc()
        raise
    except Exception:
        ORDERS.labels(mode=mode, outcome="failed").inc()
        raise
    else:
        ORDERS.labels(mode=mode, outcome="filled").inc()


def record_sweep_metrics(report: SweepReport, *, source: str) -> None:
    """A sweep's (or a stream reaction's) figures: duration, triggers claimed and filled, fallbacks."""
    SWEEP_SECONDS.labels(source=source).observe(report.seconds)
    if report.triggered:
        TRIGGERS_CLAIMED.labels(source=source).inc(report.triggered)
    if report.filled:
        TRIGGERS_FILLED.labels(source=source).inc(report.filled)
    if report.batch_fallbacks:
        FILL_PATH_FALLBACKS.inc(report.batch_fallbacks)


def serve_metrics(port: int, *, addr: str = "127.0.0.1") -> bool:
    """Serve this process's series on `port` (the stream process, a Celery worker) when set
    (METRICS_PORT) and when no PROMETHEUS_MULTIPROC_DIR already sums them into the web
    process's /metrics. Loopback by default: put a scraper on the machine or a proxy in front."""
    import os

    from prometheus_client import start_http_server

    if not port or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False
    start_http_server(port, addr=addr)
    return True
