"""Mark to market: every open paper position's mark price and unrealized PnL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, DecimalField, F, Value, When

from execution.models import Position, PositionStatus
from execution.services.paper.prices import SymbolPrices
from execution.services.position_math import q, unrealized_pnl

MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=28, decimal_places=10)


def mark_to_market_if_due(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Mark every PAPER_MARK_SECONDS, not every sweep: it rewrites every open position, which
    at scale costs more than the trigger search itself. Triggers and liquidations always use
    the fresh prices; only the displayed mark and uPnL lag by up to that interval."""
    key = "paper-sweep:marked-at"
    last = cache.get(key)
    if last is not None and now.timestamp() - last < settings.PAPER_MARK_SECONDS:
        return 0
    cache.set(key, now.timestamp(), timeout=3600)
    return mark_to_market(prices, now)


def mark_to_market(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Set mark price and uPnL of every open paper position.

    PostgreSQL: one UPDATE joined to the marks (numeric arithmetic, exact). Elsewhere the
    values are computed here in Decimal and written with a per-row guarded UPDATE (SQLite
    would compute in floating point).
    """
    if not prices:
        return 0
    if connection.vendor == "postgresql":
        return _mark_to_market_sql(prices, now)
    return _mark_to_market_python(prices, now)


def _mark_to_market_sql(prices: dict[str, SymbolPrices], now: datetime) -> int:
    values = ", ".join(["(%s, %s::numeric)"] * len(prices))
    params: list[Any] = [now]
    for symbol, entry in prices.items():
        params += [symbol, entry.mark]
    sql = f"""
        UPDATE execution_position AS p
        SET mark_price = v.mark,
            unrealized_pnl = CASE WHEN p.side = 'LONG' THEN (v.mark - p.entry_price) * p.quantity
                                  ELSE (p.entry_price - v.mark) * p.quantity END,
            marked_at = %s
        FROM (VALUES {values}) AS v(symbol, mark), accounts_account AS a
        WHERE p.symbol = v.symbol AND p.status = 'open' AND a.id = p.account_id AND a.is_paper_trading
          AND p.mark_price IS DISTINCT FROM v.mark
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # params in text order: marked_at, then the VALUES rows
        return int(cursor.rowcount)


def _mark_to_market_python(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """The same, in Decimal, guarded per row by status and quantity: a position that a fill
    changed since it was read keeps the values the fill computed."""
    positions = list(
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True, symbol__in=prices).only(
            "id", "symbol", "side", "quantity", "entry_price"
        )
    )
    for start in range(0, len(positions), 500):
        batch = positions[start : start + 500]
        marks = [When(pk=p.pk, quantity=p.quantity, then=Value(prices[p.symbol].mark)) for p in batch]
        upnls = [
            When(
                pk=p.pk,
                quantity=p.quantity,
                then=Value(q(unrealized_pnl(p.side, p.quantity, p.entry_price, prices[p.symbol].mark))),
            )
            for p in batch
        ]
        Position.objects.filter(pk__in=[p.pk for p in batch], status=PositionStatus.OPEN).update(
            mark_price=Case(*marks, default=F("mark_price"), output_field=MONEY),
            unrealized_pnl=Case(*upnls, default=F("unrealized_pnl"), output_field=MONEY),
            marked_at=now,
        )
    return len(positions)
