"""Funding: charge or credit every paper position open through a funding time.

One fundingRate request per symbol, only when the symbol's next funding time has moved since
the last check (so a settlement is seen at the first sweep after it, never an hour late).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.db.models import Min, Q
from django.db.models.functions import Coalesce

from accounts.audit import batched_events, record_event
from execution.aster.replies import FundingRate
from execution.models import FundingPayment, Position, PositionStatus
from execution.services.exchange import public_client
from execution.services.ledger import lock_account
from execution.services.market_data import fetch
from execution.services.paper.prices import SymbolPrices
from execution.services.position_math import funding_payment, q


def settle_funding(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Charge or credit funding at each funding time a paper position was open through."""
    keys = {symbol: f"paper-sweep:funding:{symbol}" for symbol in prices}
    seen = cache.get_many(list(keys.values()))
    # Only the symbols whose next funding time moved since the last check are read: the read
    # below walks every open position of its symbols, which at scale costs more than the sweep.
    due = [
        symbol
        for symbol, entry in prices.items()
        if not (entry.next_funding_time_ms and seen.get(keys[symbol]) == entry.next_funding_time_ms)
    ]
    if not due:
        return 0
    payments = 0
    symbols = (
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True, symbol__in=due)
        .values("symbol")
        .annotate(since=Min(Coalesce("last_funding_time", "opened_at")))
    )
    for row in symbols:
        symbol, since = row["symbol"], row["since"]
        start_ms = int(since.timestamp() * 1000) + 1
        for event in _funding_history(symbol, start_ms):
            funding_time = datetime.fromtimestamp(event.funding_time_ms / 1000, tz=now.tzinfo)
            if funding_time <= now:
                payments += _pay_funding(symbol, funding_time, event.funding_rate, prices[symbol].mark)
        cache.set(keys[symbol], prices[symbol].next_funding_time_ms, timeout=24 * 3600)
    return payments


def _funding_history(symbol: str, start_ms: int) -> list[FundingRate]:
    return fetch("fundingRate", lambda: public_client().funding_rates(symbol, start_time_ms=start_ms))


def _pay_funding(symbol: str, funding_time: datetime, rate: Decimal, mark: Decimal) -> int:
    due = Position.objects.filter(
        status=PositionStatus.OPEN, account__is_paper_trading=True, symbol=symbol, opened_at__lt=funding_time
    ).filter(Q(last_funding_time__isnull=True) | Q(last_funding_time__lt=funding_time))
    paid = 0
    for position_id, account_id in due.values_list("pk", "account_id"):
        with transaction.atomic(), batched_events():
            account = lock_account(account_id)
            position = Position.objects.select_for_update().get(pk=position_id)
            # Re-checked under the lock: another sweep may have paid it since the read above.
            if position.status != PositionStatus.OPEN or (
                position.last_funding_time is not None and position.last_funding_time >= funding_time
            ):
                continue
            amount = q(funding_payment(position.side, position.quantity, mark, rate))
            FundingPayment.objects.create(
                account=account,
                position=position,
                symbol=symbol,
                funding_time=funding_time,
                rate=rate,
                mark_price=mark,
                quantity=position.quantity,
                amount=amount,
            )
            position.funding_paid = q(position.funding_paid + amount)
            position.realized_pnl = q(position.realized_pnl - amount)
            position.last_funding_time = funding_time
            position.save(update_fields=["funding_paid", "realized_pnl", "last_funding_time", "updated_at"])
            account.paper_realized_pnl = q(account.paper_realized_pnl - amount)
            account.save(update_fields=["paper_realized_pnl", "updated_at"])
            record_event(
                account=account,
                kind="position.funding",
                subject=position,
                data={"rate": rate, "mark_price": mark, "amount": amount, "funding_time": funding_time},
            )
            paid += 1
    return paid
