"""The paper sweep: mark to market, funding, liquidations and TP/SL triggers for paper accounts;
and the stream's reaction to prices, which runs the same detect -> claim -> fill steps.

Two paths (stream first, sweep as the safety net):
- `react_to_prices` runs in the stream process on each mark-price batch, for the symbols whose
  price moved, from the cached prices only (no REST price call; a symbol without a fresh
  cached price is skipped and left to the sweep);
- `sweep_paper_triggers` (Celery beat, every PAPER_SWEEP_SECONDS) takes each symbol's price
  from the cache when it is fresh and polls REST only for the others, and adds the
  minute-candle crossing check for what happened between two looks.
Both run `_detect_claim_fill`: liquidation, the trigger search, the exactly-once claim
(`triggers.claim`) and the fills (`fills.fill_claimed`). Safe to run many times at once on
many workers and processes: every row is claimed exactly once, and each fill re-checks its
row's status under the account lock before booking anything. The steps run in this order
because each one can change what the next one sees: a liquidated position has no triggers
left to fill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from execution.services.paper.fills import fill_claimed
from execution.services.paper.funding import settle_funding
from execution.services.paper.liquidation import liquidate_crossed
from execution.services.paper.marking import mark_open_positions, mark_to_market_if_due
from execution.services.paper.prices import SymbolPrices, add_candles, cached_symbol_prices, current_prices
from execution.services.paper.stale_intents import cancel_stale_paper_intents
from execution.services.paper.symbols import contract_symbols_among, paper_symbols
from execution.services.paper.triggers import claim, find_triggered

__all__ = ["SweepReport", "mark_open_positions", "react_to_prices", "sweep_paper_triggers"]


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


def sweep_paper_triggers(*, now: datetime | None = None, shard: int = 0, shards: int = 1) -> SweepReport:
    """One sweep, or (`shards` > 1) the part of it for the symbols of `shard` (`symbols.shard_of`):
    N shard sweeps on any number of workers together do one whole sweep. Two sweeps of the same
    shard at once are safe (the claim is exactly once); the paper intents left in flight are
    shard 0's."""
    started = time.perf_counter()
    now = now or timezone.now()
    report = SweepReport()
    if shard == 0:
        report.stale_intents = cancel_stale_paper_intents(now)
    lists = paper_symbols().shard(shard, shards)
    symbols = set(lists.all)
    contract_symbols = set(lists.contract)
    report.symbols = len(symbols)
    prices: dict[str, SymbolPrices] = {}
    if symbols:
        prices, report.skipped_symbols = current_prices(symbols, last_for=contract_symbols, now=now)
        add_candles(prices, last_for=contract_symbols, now=now)
        mark_started = time.perf_counter()
        report.marked = mark_to_market_if_due(prices, now, key=marked_key(shard, shards))
        report.mark_seconds = time.perf_counter() - mark_started
        report.funding_payments = settle_funding(prices, now)
    # Also with no symbol listed: an order left `triggered` by a dead worker is in no list (it is
    # not pending, and often has no open position), and only the sweep re-claims it.
    _detect_claim_fill(prices, now, report, started=started, reclaim_stale=True, shard=shard, shards=shards)
    report.seconds = time.perf_counter() - started
    report.fill_seconds = report.seconds - report.detect_seconds if report.triggered else 0.0
    return report


def marked_key(shard: int, shards: int) -> str:
    """The cache key of the last mark to market of a shard (each shard marks its own symbols)."""
    return "paper-sweep:marked-at" if shards <= 1 else f"paper-sweep:marked-at:{shard}/{shards}"


def react_to_prices(symbols: set[str], *, now: datetime | None = None) -> SweepReport:
    """Liquidations and triggers of paper orders in `symbols`, from the cached prices only (the
    stream process calls it for the symbols whose price moved). Symbols without a fresh cached
    mark are skipped (the sweep polls REST for them); a CONTRACT_PRICE order without a fresh
    cached last price is left to the sweep. Orders left `triggered` by a dead worker are the
    sweep's to re-claim. The order books for fills are still read at fill time."""
    started = time.perf_counter()
    now = now or timezone.now()
    report = SweepReport(symbols=len(symbols))
    if not symbols:
        return report
    contract_symbols = set(contract_symbols_among(symbols))  # the batch's symbols only: every second
    prices = cached_symbol_prices(symbols, last_for=contract_symbols, now=now, require_last=False)
    report.skipped_symbols = sorted(symbols - prices.keys())
    _detect_claim_fill(prices, now, report, started=started, reclaim_stale=False)
    report.seconds = time.perf_counter() - started
    report.fill_seconds = report.seconds - report.detect_seconds if report.triggered else 0.0
    return report


def _detect_claim_fill(
    prices: dict[str, SymbolPrices],
    now: datetime,
    report: SweepReport,
    *,
    started: float,
    reclaim_stale: bool,
    shard: int = 0,
    shards: int = 1,
) -> None:
    """The steps the sweep and the reaction share: liquidation, the trigger search, the
    exactly-once claim (with `reclaim_stale`, also the dead workers' claims of this shard), and
    the fills of what this caller claimed."""
    if not prices and not reclaim_stale:
        report.detect_seconds = time.perf_counter() - started
        return
    found: list[int] = []
    if prices:
        report.liquidated = liquidate_crossed(prices, now)
        found = find_triggered(prices)
    claimed = claim(found, now, reclaim_stale=reclaim_stale, shard=shard, shards=shards)
    report.triggered = len(claimed)
    report.detect_seconds = time.perf_counter() - started
    if claimed:
        fills = fill_claimed(claimed, prices, now)
        report.filled, report.cancelled, report.failed = fills.filled, fills.cancelled, fills.failed
        report.batch_fallbacks = fills.batch_fallbacks
