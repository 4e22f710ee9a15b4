"""The paper sweep: mark to market, funding, liquidations and TP/SL triggers for paper accounts.

Safe to run many times at once on many workers: every row is claimed exactly once
(`triggers.claim`), and each fill re-checks its row's status under the account lock before
booking anything. The steps run in this order because each one can change what the next
one sees: a liquidated position has no triggers left to fill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from execution.models import PendingOrder, PendingOrderStatus, Position, PositionStatus, WorkingType
from execution.services.paper.fills import fill_claimed
from execution.services.paper.funding import settle_funding
from execution.services.paper.liquidation import liquidate_crossed
from execution.services.paper.marking import mark_to_market_if_due
from execution.services.paper.prices import add_candles, current_prices
from execution.services.paper.stale_intents import cancel_stale_paper_intents
from execution.services.paper.triggers import claim, find_triggered


@dataclass
class SweepReport:
    symbols: int = 0
    marked: int = 0
    funding_payments: int = 0
    liquidated: int = 0
    triggered: int = 0
    filled: int = 0
    cancelled: int = 0
    failed: int = 0
    batch_fallbacks: int = 0  # accounts whose batched fills failed and were filled one by one
    stale_intents: int = 0  # paper intents of stopped processes, cancelled
    skipped_symbols: list[str] = field(default_factory=list)
    seconds: float = 0.0
    mark_seconds: float = 0.0  # mark to market (at most every PAPER_MARK_SECONDS)
    detect_seconds: float = 0.0  # market data, marking, liquidation and trigger search, claiming
    fill_seconds: float = 0.0  # order books and fills of the claimed orders


def sweep_paper_triggers(*, now: datetime | None = None) -> SweepReport:
    started = time.perf_counter()
    now = now or timezone.now()
    report = SweepReport()
    report.stale_intents = cancel_stale_paper_intents(now)
    pending_symbols, working_types = _pending_symbols()
    position_symbols = set(
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True)
        .order_by()
        .values_list("symbol", flat=True)
        .distinct()
    )
    symbols = pending_symbols | position_symbols
    report.symbols = len(symbols)
    if symbols:
        with_last = WorkingType.CONTRACT_PRICE in working_types
        prices, report.skipped_symbols = current_prices(symbols, with_last=with_last, now=now)
        add_candles(prices, last_for=pending_symbols if with_last else set(), now=now)
        mark_started = time.perf_counter()
        report.marked = mark_to_market_if_due(prices, now)
        report.mark_seconds = time.perf_counter() - mark_started
        report.funding_payments = settle_funding(prices, now)
        report.liquidated = liquidate_crossed(prices, now)
        claimed = claim(find_triggered(prices), now)
        report.triggered = len(claimed)
        report.detect_seconds = time.perf_counter() - started
        if claimed:
            fills = fill_claimed(claimed, prices, now)
            report.filled, report.cancelled, report.failed = fills.filled, fills.cancelled, fills.failed
            report.batch_fallbacks = fills.batch_fallbacks
    report.seconds = time.perf_counter() - started
    report.fill_seconds = report.seconds - report.detect_seconds if report.triggered else 0.0
    return report


def _pending_symbols() -> tuple[set[str], set[str]]:
    rows = (
        PendingOrder.objects.filter(status=PendingOrderStatus.PENDING, account__is_paper_trading=True)
        .order_by()  # the model's ordering would leak into DISTINCT
        .values_list("symbol", "working_type")
        .distinct()
    )
    symbols, working_types = set(), set()
    for symbol, working_type in rows:
        symbols.add(symbol)
        working_types.add(working_type)
    return symbols, working_types
