"""Readiness: named checks an operator's supervisor can act on, and the counts behind the
scrape-time gauges. Reads only; each check is small and says why it failed.

A check answers `{"ok": bool, ...detail}`. The service is ready when every check is ok.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from accounts.models import Account
from execution.models import (
    Heartbeat,
    PendingOrder,
    PendingOrderStatus,
    Position,
    PositionStatus,
    StreamKind,
    StreamStatus,
    Trade,
    TradeStatus,
)
from execution.services.exchange import weight_budget

PAPER_SWEEP = "paper_sweep"
RECONCILE = "reconcile"
STALE_INTERVALS = 3  # a periodic job is late when three intervals pass without it
EXCHANGE_PROBE_TTL = 10.0  # seconds a successful exchange probe is trusted (probes must not hammer it)

Check = dict[str, Any]


def record_heartbeat(name: str, *, seconds: float = 0.0, detail: dict[str, Any] | None = None) -> None:
    """One UPSERT: the job `name` finished now."""
    Heartbeat.objects.update_or_create(
        name=name, defaults={"beat_at": timezone.now(), "seconds": seconds, "detail": detail or {}}
    )


def readiness(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    checks: dict[str, Check] = {}
    for name, check in CHECKS.items():
        try:
            checks[name] = check(now)
        except Exception as exc:  # a check that cannot run is a failed check, named, never a crash
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


def check_database(now: datetime) -> Check:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_broker_and_cache(now: datetime) -> Check:
    probe = f"readyz:{now.timestamp()}"
    cache.set(probe, 1, timeout=10)
    cache_ok = cache.get(probe) == 1
    cache.delete(probe)
    if settings.REDIS_URL:
        import redis

        broker_ok = bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping())
        broker = "redis"
    else:
        folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"]))
        broker_ok = folder.is_dir()
        broker = f"filesystem ({folder})"
    result: Check = {"ok": cache_ok and broker_ok, "broker": broker, "cache": cache_ok}
    if not broker_ok:
        result["error"] = "the broker is not reachable" if settings.REDIS_URL else "the broker folder is missing"
    return result


def _heartbeat_check(name: str, interval: float, now: datetime) -> Check:
    beat = Heartbeat.objects.filter(name=name).first()
    limit = STALE_INTERVALS * interval
    if beat is None:
        return {"ok": False, "error": f"{name} has never run", "limit_seconds": limit}
    age = (now - beat.beat_at).total_seconds()
    result: Check = {"ok": age <= limit, "age_seconds": round(age, 1), "limit_seconds": limit}
    if not result["ok"]:
        result["error"] = f"{name} last ran {age:.0f} s ago (limit {limit:.0f} s)"
    return result


def sweep_heartbeat(shard: int, shards: int) -> str:
    """The heartbeat of one shard of the paper sweep: `paper_sweep` when it is not sharded,
    `paper_sweep:K/N` for shard K of N."""
    return PAPER_SWEEP if shards <= 1 else f"{PAPER_SWEEP}:{shard}/{shards}"


def check_paper_sweep(now: datetime) -> Check:
    """Every shard of the configured PAPER_SWEEP_SHARDS swept within the limit: one shard that
    never runs leaves its symbols' stops unwatched, however often the others run."""
    shards = settings.PAPER_SWEEP_SHARDS
    if shards <= 1:
        return _heartbeat_check(PAPER_SWEEP, settings.PAPER_SWEEP_SECONDS, now)
    names = [sweep_heartbeat(shard, shards) for shard in range(shards)]
    beats = dict(Heartbeat.objects.filter(name__in=names).values_list("name", "beat_at"))
    limit = STALE_INTERVALS * settings.PAPER_SWEEP_SECONDS
    problems = []
    for name in names:
        if name not in beats:
            problems.append(f"{name} has never run")
        elif (age := (now - beats[name]).total_seconds()) > limit:
            problems.append(f"{name} last ran {age:.0f} s ago (limit {limit:.0f} s)")
    ages = [(now - at).total_seconds() for at in beats.values()]
    result: Check = {
        "ok": not problems,
        "shards": shards,
        "late_shards": len(problems),
        "oldest_age_seconds": round(max(ages), 1) if ages else None,
        "limit_seconds": limit,
    }
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        result["error"] = "; ".join(problems[:5]) + more
    return result


def check_reconciliation(now: datetime) -> Check:
    if not _live_accounts().exists():
        return {"ok": True, "detail": "no live accounts"}
    return _heartbeat_check(RECONCILE, settings.RECONCILE_SECONDS, now)


STATUS_WRITE_SLACK = 5.0  # a StreamStatus row is at most a write interval (2 s) behind its process


def market_stream_healthy(*, within_seconds: float | None = None, now: datetime | None = None) -> bool:
    """True when some process's market stream is connected and received a frame within
    `within_seconds` (default STREAM_IDLE_SECONDS plus the status rows' write slack)."""
    window = within_seconds if within_seconds is not None else settings.STREAM_IDLE_SECONDS + STATUS_WRITE_SLACK
    cutoff = (now or timezone.now()) - timedelta(seconds=window)
    return StreamStatus.objects.filter(kind=StreamKind.MARKET, connected=True, last_frame_at__gte=cutoff).exists()


def check_market_stream(now: datetime) -> Check:
    """The market-data stream: connected with a recent frame (the process reconnects by itself
    after STREAM_IDLE_SECONDS of silence), and its lag from exchange time to receipt."""
    rows = list(StreamStatus.objects.filter(kind=StreamKind.MARKET))
    if not rows:
        return {"ok": False, "error": "no market stream has reported (is aster_stream running?)"}
    window = settings.STREAM_IDLE_SECONDS + STATUS_WRITE_SLACK
    best = max(rows, key=lambda r: r.last_frame_at or datetime.min.replace(tzinfo=now.tzinfo))
    result: Check = {
        "ok": market_stream_healthy(within_seconds=window, now=now),
        "streams": len(rows),
        "lag_ms": best.lag_ms,
        "last_frame_age_seconds": round((now - best.last_frame_at).total_seconds(), 1) if best.last_frame_at else None,
    }
    if not result["ok"]:
        result["error"] = f"no market stream has delivered a frame in the last {window:.0f} s"
    return result


def check_user_streams(now: datetime) -> Check:
    """Every live, trading account's user-data stream connected (reconciliation covers the rest)."""
    expected = set(_live_accounts().exclude(trading_state="halted").values_list("pk", flat=True))
    if not expected:
        return {"ok": True, "detail": "no live accounts"}
    connected = set(
        StreamStatus.objects.filter(kind=StreamKind.USER, connected=True, account_id__in=expected).values_list(
            "account_id", flat=True
        )
    )
    missing = sorted(expected - connected)
    result: Check = {"ok": not missing, "accounts": len(expected), "connected": len(connected)}
    if missing:
        result["error"] = f"user-data stream down for accounts {missing[:20]}"
    return result


def check_exchange(now: datetime) -> Check:
    """The exchange (or simulator) answers its time endpoint; a success is trusted briefly."""
    if cache.get("readyz:exchange-ok"):
        return {"ok": True, "cached": True}
    from execution.services.exchange import public_client

    started = time.perf_counter()
    public_client().server_time()
    cache.set("readyz:exchange-ok", True, timeout=EXCHANGE_PROBE_TTL)
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _live_accounts() -> Any:
    return Account.objects.filter(is_paper_trading=False)


CHECKS: dict[str, Callable[[datetime], Check]] = {
    "database": check_database,
    "broker_and_cache": check_broker_and_cache,
    "paper_sweep": check_paper_sweep,
    "reconciliation": check_reconciliation,
    "market_stream": check_market_stream,
    "user_streams": check_user_streams,
    "exchange": check_exchange,
}


@dataclass
class OperationalCounts:
    accounts: dict[tuple[str, str], int] = field(default_factory=dict)
    open_positions: dict[str, int] = field(default_factory=dict)
    unknown_intents: int = 0
    failed_protective: int = 0


def operational_counts() -> OperationalCounts:
    """Four aggregate queries, whatever the number of rows."""
    counts = OperationalCounts()
    for row in Account.objects.values("is_paper_trading", "trading_state").annotate(n=Count("id")).order_by():
        counts.accounts[("paper" if row["is_paper_trading"] else "live", row["trading_state"])] = row["n"]
    for row in (
        Position.objects.filter(status=PositionStatus.OPEN)
        .values("account__is_paper_trading")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts.open_positions["paper" if row["account__is_paper_trading"] else "live"] = row["n"]
    counts.unknown_intents = Trade.objects.filter(status=TradeStatus.UNKNOWN).count()
    counts.failed_protective = PendingOrder.objects.filter(status=PendingOrderStatus.FAILED).count()
    return counts


class DatabaseCollector(Collector):
    """Gauges read at scrape time: a handful of aggregate queries, and the weight budget."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
