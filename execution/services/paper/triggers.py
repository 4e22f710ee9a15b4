"""TP/SL triggers: the exchange's rule, the search for crossed orders, and claiming them.

Claiming is exactly once across concurrent sweeps: the candidates still `pending` are held
with `select_for_update(skip_locked=True)` and moved to `triggered` in one audited bulk
transition; a second sweep skips the held rows and finds the rest no longer pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.audit import bulk_transition
from execution.models import PendingOrder, PendingOrderKind, PendingOrderStatus, WorkingType
from execution.services.paper.prices import SymbolPrices


def crossed_q(low: Decimal, high: Decimal) -> Q:
    """Orders whose trigger the price touched while moving within [low, high] (exchange rules)."""
    return (
        Q(kind=PendingOrderKind.STOP_LOSS, side="SELL", trigger_price__gte=low)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="SELL", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.STOP_LOSS, side="BUY", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="BUY", trigger_price__gte=low)
    )


def is_crossed(order: PendingOrder, price: Decimal) -> bool:
    """A SELL stop triggers at or below its price, a SELL take-profit at or above; BUY mirrors."""
    sell = order.side == "SELL"
    if order.kind == PendingOrderKind.STOP_LOSS:
        return price <= order.trigger_price if sell else price >= order.trigger_price
    return price >= order.trigger_price if sell else price <= order.trigger_price


def is_triggered(order: PendingOrder, entry: SymbolPrices) -> bool:
    """The exchange's rule for this order: its working type's price now, or within a completed
    minute candle that started after the order was created."""
    if order.working_type == WorkingType.CONTRACT_PRICE and (entry.last_missing or entry.last is None):
        # Never judged on the mark in place of a last price it does not have (also when the
        # order arrived after its caller chose which symbols need last prices).
        return False
    if is_crossed(order, entry.price(order.working_type)):
        return True
    return any(
        candle.open_time >= order.created_at and (is_crossed(order, candle.low) or is_crossed(order, candle.high))
        for candle in entry.candles(order.working_type)
    )


def find_triggered(prices: dict[str, SymbolPrices]) -> list[int]:
    """Two steps: a coarse range search per (symbol, kind, side) on the partial index
    `pendingorder_trigger_lookup` with the widest price range of the symbol, then the exact
    rule per order in Python on the few candidates."""
    ids: list[int] = []
    symbols = sorted(prices)
    for start in range(0, len(symbols), 100):
        condition = Q()
        for symbol in symbols[start : start + 100]:
            low, high = prices[symbol].bounds()
            condition |= Q(symbol=symbol) & crossed_q(low, high)
        candidates = PendingOrder.objects.filter(
            condition, status=PendingOrderStatus.PENDING, account__is_paper_trading=True
        ).only("id", "symbol", "kind", "side", "trigger_price", "working_type", "created_at")
        ids += [order.pk for order in candidates if is_triggered(order, prices[order.symbol])]
    return ids


def claim(candidate_ids: Iterable[int], now: datetime, *, reclaim_stale: bool = True) -> list[int]:
    """pending -> triggered, exactly once across concurrent sweeps; also (`reclaim_stale`)
    re-claims orders left `triggered` by a worker that died before filling them, after
    PAPER_RECLAIM_SECONDS (no status change: a new deadline)."""
    candidate_ids = list(candidate_ids)
    with transaction.atomic():
        fresh = list(
            PendingOrder.objects.select_for_update(skip_locked=True)
            .filter(pk__in=candidate_ids, status=PendingOrderStatus.PENDING)
            .values_list("pk", flat=True)
        )
        stale = _stale_claims(now) if reclaim_stale else []
        if fresh:
            bulk_transition(
                PendingOrder.objects.filter(pk__in=fresh),
                to_status=PendingOrderStatus.TRIGGERED,
                now=now,
                values={"triggered_at": now},
            )
        if stale:
            PendingOrder.objects.filter(pk__in=stale).update(triggered_at=now, updated_at=now)
    return fresh + stale


def _stale_claims(now: datetime) -> list[int]:
    """Orders left `triggered` past PAPER_RECLAIM_SECONDS, held (inside the caller's transaction)."""
    return list(
        PendingOrder.objects.select_for_update(skip_locked=True)
        .filter(
            status=PendingOrderStatus.TRIGGERED,
            triggered_at__lt=now - timedelta(seconds=settings.PAPER_RECLAIM_SECONDS),
            account__is_paper_trading=True,
        )
        .values_list("pk", flat=True)
    )
