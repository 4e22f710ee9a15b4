"""Reads for the API: everything scoped to the requesting owner."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet, Sum

from accounts.models import Account
from execution.models import PendingOrder, PendingOrderStatus, Position, PositionStatus, ReconciliationRun, Trade
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
