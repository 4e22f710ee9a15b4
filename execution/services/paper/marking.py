"""Mark to market: open positions' mark price and unrealized PnL (ROE follows: uPnL / margin).

Two callers: the paper sweep marks paper positions from its own fresh prices (cache or REST)
every PAPER_MARK_SECONDS; `mark_open_positions` (the stream process, each interval) marks
every open position, paper and live, from the fresh entries of the price cache. A stale
entry marks nothing: the position keeps its old mark, and `marked_at` says how old it is.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, DecimalField, F, Value, When
from django.utils import timezone

from execution.models import Position, PositionStatus
from execution.services import price_cache
from execution.services.paper.prices import SymbolPrices
from execution.services.position_math import q, unrealized_pnl

MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=28, decimal_places=10)


def mark_to_market_if_due(prices: dict[str, SymbolPrices], now: datetime, *, key: str = "paper-sweep:marked-at") -> int:
    """Mark every PAPER_MARK_SECONDS, not every sweep: it rewrites every open position, which
    at scale costs more than the trigger search itself. Triggers and liquidations always use
    the fresh prices; only the displayed mark and uPnL lag by up to that interval. `key`: one
    per sweep shard (each marks its own symbols)."""
    last = cache.get(key)
    if last is not None and now.timestamp() - last < settings.PAPER_MARK_SECONDS:
        return 0
    cache.set(key, now.timestamp(), timeout=3600)
    return mark_to_market(prices, now)


def mark_to_market(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Set mark price and uPnL of every open paper position in `prices`."""
    return mark_positions({symbol: entry.mark for symbol, entry in prices.items()}, now, paper_only=True)


def mark_open_positions(*, now: datetime | None = None) -> int:
    """Every open position, paper and live, marked from the fresh cached marks: one set-based
    UPDATE (PostgreSQL). Returns the number of positions marked."""
    now = now or timezone.now()
    marks = {symbol: reading.value for symbol, reading in price_cache.mark_readings(now=now).items() if reading.fresh}
    return mark_positions(marks, now, paper_only=False)


def mark_positions(marks: dict[str, Decimal], now: datetime, *, paper_only: bool) -> int:
    """Set mark price, uPnL and `marked_at` of the open positions in the marks' symbols.

    PostgreSQL: one UPDATE joined to the marks (numeric arithmetic, exact). Elsewhere the
    values are computed here in Decimal and written with a per-row guarded UPDATE (SQLite
    would compute in floating point).
    """
    if not marks:
        return 0
    if connection.vendor == "postgresql":
        return _mark_sql(marks, now, paper_only=paper_only)
    return _mark_python(marks, now, paper_only=paper_only)


def _mark_sql(marks: dict[str, Decimal], now: datetime, *, paper_only: bool) -> int:
    values = ", ".join(["(%s, %s::numeric)"] * len(marks))
    params: list[Any] = [now]
    for symbol, mark in marks.items():
        params += [symbol, mark]
    paper = "AND a.is_paper_trading" if paper_only else ""
    # `marked_at` moves even when the mark did not: it says how old the mark is.
    sql = f"""
        UPDATE execution_position AS p
        SET mark_price = v.mark,
            unrealized_pnl = CASE WHEN p.side = 'LONG' THEN (v.mark - p.entry_price) * p.quantity
                                  ELSE (p.entry_price - v.mark) * p.quantity END,
            marked_at = %s
        FROM (VALUES {values}) AS v(symbol, mark), accounts_account AS a
        WHERE p.symbol = v.symbol AND p.status = 'open' AND a.id = p.account_id {paper}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # params in text order: marked_at, then the VALUES rows
        return int(cursor.rowcount)


def _mark_python(marks: dict[str, Decimal], now: datetime, *, paper_only: bool) -> int:
    """The same, in Decimal, guarded per row by status and quantity: a position that a fill
    changed since it was read keeps the values the fill computed."""
    rows = Position.objects.filter(status=PositionStatus.OPEN, symbol__in=marks)
    if paper_only:
        rows = rows.filter(account__is_paper_trading=True)
    positions = list(rows.only("id", "symbol", "side", "quantity", "entry_price"))
    for start in range(0, len(positions), 500):
        batch = positions[start : start + 500]
        new_marks = [When(pk=p.pk, quantity=p.quantity, then=Value(marks[p.symbol])) for p in batch]
        upnls = [
            When(
                pk=p.pk,
                quantity=p.quantity,
                then=Value(q(unrealized_pnl(p.side, p.quantity, p.entry_price, marks[p.symbol]))),
            )
            for p in batch
        ]
        Position.objects.filter(pk__in=[p.pk for p in batch], status=PositionStatus.OPEN).update(
            mark_price=Case(*new_marks, default=F("mark_price"), output_field=MONEY),
            unrealized_pnl=Case(*upnls, default=F("unrealized_pnl"), output_field=MONEY),
            marked_at=now,
        )
    return len(positions)
