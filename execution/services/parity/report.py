"""Reads for the parity report: figures by symbol and kind, a histogram of slippage, the
calibration paper would have needed, and the decisions one side of a shadow pair refused.

The figures are computed in Python from one values() read of the period's records (a few
numbers per fill), so SQLite and PostgreSQL give the same answers."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ExecutionEvent
from execution.models import ParityKind, ParityRecord

MARKET_KINDS = (ParityKind.ENTRY, ParityKind.CLOSE, ParityKind.FLIP)
TRIGGER_KINDS = (ParityKind.TAKE_PROFIT, ParityKind.STOP_LOSS)
# Histogram edges in bps; the first and last buckets are open (null low / high).
HISTOGRAM_EDGES = tuple(Decimal(e) for e in ("-20", "-10", "-5", "-2", "-1", "0", "1", "2", "5", "10", "20"))
RELATIVE_SINCE = re.compile(r"([0-9]{1,4})([hd])")  # fullmatch: ASCII digits, no trailing newline
DECISION_MISMATCH = "parity.decision_mismatch"
MISMATCH_LIMIT = 1000
PLACES = Decimal("0.0001")
RATE_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class Group:
    symbol: str
    kind: str
    count: int
    mean_bps: Decimal | None
    median_bps: Decimal | None
    p95_bps: Decimal | None
    fee_diff: Decimal
    mean_trigger_delay_ms: int | None


@dataclass(frozen=True)
class Bucket:
    low_bps: Decimal | None
    high_bps: Decimal | None
    count: int


@dataclass(frozen=True)
class Calibration:
    fee_rate: Decimal | None
    slippage_margin_bps: Decimal | None
    basis: str


@dataclass(frozen=True)
class DecisionMismatch:
    at: datetime
    decision: int | None
    shadow_decision: int | None
    symbol: str
    action: str
    live_status: str
    shadow_status: str
    live_reason: str
    shadow_reason: str


@dataclass(frozen=True)
class ParityReport:
    account: int | None
    since: datetime | None
    groups: list[Group]
    histogram: list[Bucket]
    calibration: Calibration
    decisions: list[DecisionMismatch] = field(default_factory=list)


def parse_since(raw: str | None, *, now: datetime | None = None) -> datetime | None:
    """`1d`, `7d`, `12h` (that long ago) or an ISO 8601 time (UTC when it names no zone)."""
    if raw is None or raw == "":
        return None
    now = now or timezone.now()
    if match := RELATIVE_SINCE.fullmatch(raw):
        amount, unit = int(match.group(1)), match.group(2)
        return now - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        parsed = parse_datetime(raw)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationError(
            {"since": f"{raw!r} is neither a duration like 1d, 7d or 12h nor an ISO 8601 time (2026-11-01T00:00:00Z)"}
        )
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    try:
        # In UTC now: a time near datetime.min with a zone east of UTC has no UTC equivalent (the
        # database adapters would raise OverflowError, a 500, on converting it).
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError({"since": f"{raw!r} is out of range"}) from None
    if parsed > now:
        raise ValidationError({"since": f"{raw!r} is in the future"})
    return parsed


def parity_report(*, account_id: int | None = None, since: datetime | None = None) -> ParityReport:
    records = ParityRecord.objects.all()
    if account_id is not None:
        records = records.filter(account_id=account_id)
    if since is not None:
        records = records.filter(created_at__gte=since)
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in records.values(
            "symbol",
            "kind",
            "side",
            "quantity",
            "live_price",
            "slippage_bps",
            "live_fee",
            "fee_diff",
            "shadow_price",
            "shadow_funding",
            "trigger_delay_ms",
            "stale",
        )
    ]
    return ParityReport(
        account=account_id,
        since=since,
        groups=groups_of(rows),
        # Market fills only: a TP/SL's slippage is against paper's trigger-time price, not a book
        # walk at the same moment; mixed in, it would blur the book walk's figure (by kind above).
        histogram=histogram_of(
            [r["slippage_bps"] for r in rows if r["kind"] in MARKET_KINDS and r["slippage_bps"] is not None]
        ),
        calibration=calibration_of(rows),
        decisions=decision_mismatches(account_id=account_id, since=since),
    )


def groups_of(rows: Sequence[dict[str, Any]]) -> list[Group]:
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[(row["symbol"], row["kind"])].append(row)
    groups = []
    for (symbol, kind), members in sorted(by_key.items()):
        bps = sorted(r["slippage_bps"] for r in members if r["slippage_bps"] is not None)
        delays = [r["trigger_delay_ms"] for r in members if r["trigger_delay_ms"] is not None]
        groups.append(
            Group(
                symbol=symbol,
                kind=kind,
                count=len(members),
                mean_bps=_places(sum(bps, Decimal("0")) / len(bps)) if bps else None,
                median_bps=_places(statistics.median(bps)) if bps else None,
                p95_bps=_places(percentile(bps, 95)) if bps else None,
                fee_diff=sum((r["fee_diff"] for r in members if has_shadow(r)), Decimal("0")),
                mean_trigger_delay_ms=round(sum(delays) / len(delays)) if delays else None,
            )
        )
    return groups


def has_shadow(row: dict[str, Any]) -> bool:
    """Paper's side is known: a shadow price (a fill), a shadow charge (a funding settlement).
    Rows without one (no book, a leg still waiting for its trigger, a settlement without a mark)
    stay out of the fee sums: their difference would be the live fee whole."""
    return row["shadow_funding" if row["kind"] == ParityKind.FUNDING else "shadow_price"] is not None


def percentile(ordered: Sequence[Decimal], pct: int) -> Decimal:
    """Nearest-rank percentile of an ascending list (the value at or below which pct% fall)."""
    rank = max(1, -(-pct * len(ordered) // 100))  # ceil(pct/100 * n)
    return ordered[rank - 1]


def histogram_of(values: Sequence[Decimal]) -> list[Bucket]:
    edges: list[Decimal | None] = [None, *HISTOGRAM_EDGES, None]
    counts = [0] * (len(edges) - 1)
    for value in values:
        index = sum(1 for edge in HISTOGRAM_EDGES if value >= edge)
        counts[index] += 1
    return [Bucket(low_bps=edges[i], high_bps=edges[i + 1], count=counts[i]) for i in range(len(counts))]


def calibration_of(rows: Sequence[dict[str, Any]]) -> Calibration:
    """The fee rate that would have charged what live charged (live fees over live notional), and
    the margin (bps) a market fill would need on top of the book walk: the median slippage of
    fresh entry/close/flip shadows when it is positive, else 0 (the walk is not optimistic)."""
    fills = [r for r in rows if r["kind"] != ParityKind.FUNDING and r["live_price"] is not None]
    notional = sum((r["quantity"] * r["live_price"] for r in fills), Decimal("0"))
    fees = sum((r["live_fee"] for r in fills), Decimal("0"))
    fee_rate = (fees / notional).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN) if notional > 0 else None
    market = sorted(
        r["slippage_bps"]
        for r in rows
        if r["kind"] in MARKET_KINDS and r["slippage_bps"] is not None and not r["stale"]
    )
    stale = sum(1 for r in rows if r["kind"] in MARKET_KINDS and r["stale"])
    margin = max(Decimal("0"), _places(statistics.median(market))) if market else None
    basis = (
        f"fee rate: live fees / live notional over {len(fills)} fills (paper uses {settings.PAPER_TAKER_FEE_RATE}); "
        f"slippage margin: median slippage of {len(market)} market fills with a fresh book "
        f"({stale} on a stale book left out), 0 when paper was not optimistic. Settings are never changed."
    )
    return Calibration(fee_rate=fee_rate, slippage_margin_bps=margin, basis=basis)


def decision_mismatches(*, account_id: int | None = None, since: datetime | None = None) -> list[DecisionMismatch]:
    """Decisions that one side of a shadow pair (a live account and its paper shadow) refused and
    the other did not, as decisions.services recorded them."""
    events = ExecutionEvent.objects.filter(kind=DECISION_MISMATCH)
    if account_id is not None:
        events = events.filter(account_id=account_id)
    if since is not None:
        events = events.filter(created_at__gte=since)
    mismatches = []
    newest = list(events.order_by("-created_at", "-id")[:MISMATCH_LIMIT])
    for event in reversed(newest):  # the newest MISMATCH_LIMIT, listed oldest first
        data = event.data or {}
        mismatches.append(
            DecisionMismatch(
                at=event.created_at,
                decision=data.get("decision"),
                shadow_decision=data.get("shadow_decision"),
                symbol=str(data.get("symbol", "")),
                action=str(data.get("action", "")),
                live_status=str(data.get("live_status", "")),
                shadow_status=str(data.get("shadow_status", "")),
                live_reason=str(data.get("live_reason", "")),
                shadow_reason=str(data.get("shadow_reason", "")),
            )
        )
    return mismatches


def _places(value: Decimal) -> Decimal:
    return Decimal(value).quantize(PLACES, rounding=ROUND_HALF_EVEN)
