"""Liquidation: a paper position whose mark reached its liquidation price closes at the mark.

The search is one index range probe per (symbol, side, price range) on PostgreSQL (LATERAL),
an OR of the same conditions elsewhere: its cost follows the positions it finds."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from accounts.audit import batched_events, record_event
from execution.models import Position, PositionStatus, TradeReason
from execution.services.alerts import alert_liquidation
from execution.services.ledger import close_whole_position, lock_account
from execution.services.market_data import symbol_rules
from execution.services.paper.prices import SymbolPrices
from execution.services.paper.triggers import NO_CEILING
from execution.services.position_math import q

logger = logging.getLogger(__name__)


def liquidate_crossed(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Close paper positions whose mark price reached the liquidation price (at the mark)."""
    if not prices:
        return 0
    rows = _crossed_sql(prices) if connection.vendor == "postgresql" else _crossed_orm(prices)
    liquidated = 0
    for position_id, symbol in rows:
        fee_rate = symbol_rules(symbol).liquidation_fee  # cached exchangeInfo; before the transaction
        liquidated += liquidate_position(position_id, mark=prices[symbol].mark, fee_rate=fee_rate, now=now)
    return liquidated


# One index range probe per (symbol, side, price range) on the partial index
# `position_liquidation_lookup`: a LONG is crossed at or below its liquidation price, a SHORT at
# or above. A candle's probe also requires the position to have been open when it started.
LIQUIDATION_SEARCH_SQL = """
    WITH candidates AS MATERIALIZED (
        SELECT p.id, p.symbol, p.account_id
        FROM unnest(%s::varchar[], %s::varchar[], %s::numeric[], %s::numeric[], %s::timestamptz[])
             AS r(symbol, side, low, high, since)
        CROSS JOIN LATERAL (
            SELECT p.id, p.symbol, p.account_id FROM execution_position p
            WHERE p.status = 'open' AND p.liquidation_price IS NOT NULL
              AND p.symbol = r.symbol AND p.side = r.side
              AND p.liquidation_price >= r.low AND p.liquidation_price <= r.high
              AND (r.since IS NULL OR p.opened_at <= r.since)
            OFFSET 0  -- never pulled up into a join over the whole table: one probe per row of r
        ) p
    )
    SELECT DISTINCT c.id, c.symbol FROM candidates c
    WHERE EXISTS (SELECT 1 FROM accounts_account a WHERE a.id = c.account_id AND a.is_paper_trading)
"""


def liquidation_probes(
    prices: dict[str, SymbolPrices],
) -> list[tuple[str, str, Decimal, Decimal, datetime | None]]:
    """(symbol, side, low, high, since): the liquidation prices crossed by the mark now, and by
    each completed mark candle (for positions open when it started)."""
    probes: list[tuple[str, str, Decimal, Decimal, datetime | None]] = []
    for symbol in sorted(prices):
        entry = prices[symbol]
        seen: list[tuple[Decimal, Decimal, datetime | None]] = [(entry.mark, entry.mark, None)]
        seen += [(candle.low, candle.high, candle.open_time) for candle in entry.mark_candles]
        for low, high, since in seen:
            probes.append((symbol, "LONG", low, NO_CEILING, since))
            probes.append((symbol, "SHORT", Decimal("0"), high, since))
    return probes


def _crossed_sql(prices: dict[str, SymbolPrices]) -> list[tuple[int, str]]:
    columns: list[list[Any]] = [list(column) for column in zip(*liquidation_probes(prices), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(LIQUIDATION_SEARCH_SQL, columns)
        return [(int(pk), str(symbol)) for pk, symbol in cursor.fetchall()]


def _crossed_orm(prices: dict[str, SymbolPrices]) -> list[tuple[int, str]]:
    """The portable search (SQLite): an OR of the same conditions."""
    condition = Q()
    for symbol, entry in prices.items():
        condition |= _liquidation_q(symbol, entry.mark, entry.mark, None)
        for candle in entry.mark_candles:
            condition |= _liquidation_q(symbol, candle.low, candle.high, candle.open_time)
    return list(
        Position.objects.filter(
            status=PositionStatus.OPEN, account__is_paper_trading=True, liquidation_price__isnull=False
        )
        .filter(condition)
        .values_list("pk", "symbol")
    )


def _liquidation_q(symbol: str, low: Decimal, high: Decimal, since: datetime | None) -> Q:
    crossed = Q(side="LONG", liquidation_price__gte=low) | Q(side="SHORT", liquidation_price__lte=high)
    scope = Q(symbol=symbol) & crossed
    return scope & Q(opened_at__lte=since) if since is not None else scope


def liquidate_position(position_id: int, *, mark: Decimal, fee_rate: Decimal, now: datetime) -> int:
    with transaction.atomic(), batched_events():
        account_id = Position.objects.values_list("account_id", flat=True).get(pk=position_id)
        account = lock_account(account_id)
        position = Position.objects.select_for_update().get(pk=position_id)
        if position.status != PositionStatus.OPEN or position.liquidation_price is None:
            return 0
        crossed_now = (
            (mark <= position.liquidation_price) if position.side == "LONG" else (mark >= position.liquidation_price)
        )
        # Liquidation happens at the mark price; a crossing seen only in a candle happened at
        # the liquidation price (the mark has since come back).
        price = mark if crossed_now else position.liquidation_price
        fee = q(position.quantity * price * fee_rate)
        close_whole_position(
            account=account,
            position=position,
            price=price,
            fee=fee,
            reason=TradeReason.LIQUIDATION,
            client_order_id=f"liq-{position.pk}",
            now=now,
            realized_floor=-position.margin,
        )
        record_event(
            account=account,
            kind="position.liquidated",
            subject=position,
            data={"mark_price": mark, "price": price, "liquidation_price": position.liquidation_price},
        )
        logger.warning("paper position %s (%s %s) liquidated at %s", position.pk, position.side, position.symbol, price)
    alert_liquidation(account=account, position=position, price=price)  # after the commit
    return 1
