"""The service's Prometheus series: one place that names them, so that a dashboard and an
alert rule can rely on the names (`execution_` prefix, base units, `_total` for counters).

Counters and histograms are moved by the code that does the work (order path, sweep,
reconciliation, streams, alerts). Gauges that describe the database (accounts by trading
state, open positions, unknown intents) are computed when Prometheus scrapes, by
`DatabaseCollector`, so they are true whichever process changed the rows.

Processes: the web process serves `/metrics`. Workers and the stream process either share a
`PROMETHEUS_MULTIPROC_DIR` with it on one machine (their series then appear in the web
process's `/metrics`), or each serve their own on `METRICS_PORT` (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
    "Receipt time minus the exchange's event time, last frame.",
    ["stream"],
    multiprocess_mode="max",
)
STREAM_RECONNECTS = Counter("execution_stream_reconnects", "Stream reconnects.", ["stream"])
STREAM_FRAMES_DROPPED = Counter("execution_stream_frames_dropped", "Stream frames or items dropped as bad.", ["stream"])
ALERT_DELIVERIES = Counter("execution_alert_deliveries", "Alert deliveries by outcome.", ["outcome"])


class DatabaseCollector(Collector):
    """Gauges read at scrape time: a handful of aggregate queries, and the weight budget."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from execution.services.exchange import weight_budget
        from execution.services.health import operational_counts

        counts = operational_counts()
        accounts = GaugeMetricFamily(
            "execution_accounts", "Accounts by mode and trading state.", labels=["mode", "state"]
        )
        for (mode, state), value in sorted(counts.accounts.items()):
            accounts.add_metric([mode, state], value)
        yield accounts
        positions = GaugeMetricFamily("execution_open_positions", "Open positions by mode.", labels=["mode"])
        for mode, value in sorted(counts.open_positions.items()):
            positions.add_metric([mode], value)
        yield positions
        yield GaugeMetricFamily(
            "execution_unknown_intents", "Orders whose outcome is not known yet.", value=counts.unknown_intents
        )
        yield GaugeMetricFamily(
            "execution_exchange_weight_used",
            "Exchange request weight used this minute (the budget shared through Redis, else this process's).",
            value=weight_budget().used_this_minute(),
        )
        yield GaugeMetricFamily(
            "execution_failed_protective_orders",
            "Protective legs that could not be placed (positions needing attention).",
            value=counts.failed_protective,
        )

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected lazily: no database query at registration
