"""Reads for the API: everything scoped to the requesting owner."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Prefetch, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import Account, ExecutionEvent
from execution.models import (
    Alert,
    FundingPayment,
    PendingOrder,
    PendingOrderStatus,
    Position,
    PositionStatus,
    ReconciliationItem,
    ReconciliationRun,
    Trade,
    TradeStatus,
)
from execution.services import price_cache

logger = logging.getLogger(__name__)


def accounts_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Account]:
    return Account.objects.filter(owner_id=user.pk)


def positions_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Position]:
    return Position.objects.filter(account__owner_id=user.pk).select_related("account")


def trades_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Trade]:
    return Trade.objects.filter(account__owner_id=user.pk)


def pending_orders_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[PendingOrder]:
    return PendingOrder.objects.filter(account__owner_id=user.pk)


def account_status(account: Account) -> dict[str, Any]:
    open_positions = list(
        Position.objects.filter(account=account, status=PositionStatus.OPEN).select_related("account")
    )
    totals = Position.objects.filter(account=account, status=PositionStatus.OPEN).aggregate(
        upnl=Sum("unrealized_pnl"), margin=Sum("margin")
    )
    run = ReconciliationRun.objects.filter(account=account).order_by("-started_at").first()
    return {
        "account": account,
        "open_positions": open_positions,
        "mark_prices": mark_prices({p.symbol for p in open_positions}),
        "pending_orders": PendingOrder.objects.filter(
            account=account, status__in=[PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED]
        ).count(),
        "unrealized_pnl": totals["upnl"] or Decimal("0"),
        "margin_in_use": totals["margin"] or Decimal("0"),
        "unknown_intents": Trade.objects.filter(account=account, status="unknown").count(),
        "last_reconciliation": None
        if run is None
        else {"id": run.pk, "status": run.status, "differences": run.differences, "started_at": run.started_at},
    }


def mark_prices(symbols: set[str]) -> dict[str, dict[str, Any]]:
    """The cached marks of `symbols` with their age (the one price reader); empty when the cache
    cannot be read: the status still answers."""
    try:
        readings = price_cache.mark_readings(symbols) if symbols else {}
    except Exception:
        logger.warning("status: the price cache could not be read", exc_info=True)
        return {}
    return {
        symbol: {
            "value": r.value,
            "event_time_ms": r.event_time_ms,
            "age_seconds": round(r.age_seconds, 3),
            "fresh": r.fresh,
        }
        for symbol, r in readings.items()
    }


def open_position_count(account: Account) -> int:
    return Position.objects.filter(account=account, status=PositionStatus.OPEN).count()


def active_legs(position: Position) -> list[PendingOrder]:
    return list(
        PendingOrder.objects.filter(
            position=position, status__in=[PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED]
        ).order_by("kind")
    )


# --------------------------------------------------------------------------- history


def events_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[ExecutionEvent]:
    return ExecutionEvent.objects.filter(account__owner_id=user.pk)


def funding_payments_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[FundingPayment]:
    return FundingPayment.objects.filter(account__owner_id=user.pk)


def reconciliation_runs_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[ReconciliationRun]:
    return ReconciliationRun.objects.filter(account__owner_id=user.pk).prefetch_related(
        Prefetch("items", queryset=ReconciliationItem.objects.order_by("id"))
    )


def alerts_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Alert]:
    return Alert.objects.filter(account__owner_id=user.pk)


def daily_pnl(*, account: Account, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    """Realized PnL (gross, before fees), fees and funding per UTC day (two grouped queries):
    `net` = realized - fees - funding (funding paid is positive). Days without any are left out."""
    trades = Trade.objects.filter(account=account, status=TradeStatus.FILLED, filled_at__isnull=False)
    funding = FundingPayment.objects.filter(account=account)
    if start is not None:
        trades, funding = trades.filter(filled_at__gte=start), funding.filter(funding_time__gte=start)
    if end is not None:
        trades, funding = trades.filter(filled_at__lt=end), funding.filter(funding_time__lt=end)
    days: dict[Any, dict[str, Any]] = {}
    zero = Decimal("0")

    def day(key: Any) -> dict[str, Any]:
        return days.setdefault(key, {"day": key, "realized_pnl": zero, "fees": zero, "funding": zero, "trades": 0})

    for row in (
        trades.order_by()
        .annotate(d=TruncDate("filled_at", tzinfo=UTC))
        .values("d")
        .annotate(pnl=Sum("realized_pnl"), fees=Sum("fee"), n=Count("id"))
    ):
        entry = day(row["d"])
        fees = row["fees"] or zero
        # A trade's realized_pnl is net of its fee: the day shows it gross, and the fees apart.
        entry["realized_pnl"], entry["fees"], entry["trades"] = (row["pnl"] or zero) + fees, fees, row["n"]
    for row in (
        funding.order_by().annotate(d=TruncDate("funding_time", tzinfo=UTC)).values("d").annotate(amount=Sum("amount"))
    ):
        day(row["d"])["funding"] = row["amount"] or zero
    result = [days[key] for key in sorted(days)]
    for entry in result:
        entry["net"] = entry["realized_pnl"] - entry["fees"] - entry["funding"]
    return result
