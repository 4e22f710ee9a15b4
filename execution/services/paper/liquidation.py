"""Liquidation: a paper position whose mark reached its liquidation price closes at the mark."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q

from accounts.audit import batched_events, record_event
from execution.models import Position, PositionStatus, TradeReason
from execution.services.alerts import alert_liquidation
from execution.services.ledger import close_whole_position, lock_account
from execution.services.market_data import symbol_rules
from execution.services.paper.prices import SymbolPrices
from execution.services.position_math import q

logger = logging.getLogger(__name__)


def liquidate_crossed(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Close paper positions whose mark price reached the liquidation price (at the mark)."""
    condition = Q()
    for symbol, entry in prices.items():
        condition |= _liquidation_q(symbol, entry.mark, entry.mark, None)
        for candle in entry.mark_candles:
            condition |= _liquidation_q(symbol, candle.low, candle.high, candle.open_time)
    if not condition:
        return 0
    rows = list(
        Position.objects.filter(
            status=PositionStatus.OPEN, account__is_paper_trading=True, liquidation_price__isnull=False
        )
        .filter(condition)
        .values_list("pk", "symbol")
    )
    liquidated = 0
    for position_id, symbol in rows:
        fee_rate = symbol_rules(symbol).liquidation_fee  # cached exchangeInfo; before the transaction
        liquidated += liquidate_position(position_id, mark=prices[symbol].mark, fee_rate=fee_rate, now=now)
    return liquidated


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
