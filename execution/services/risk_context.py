"""The risk context of an order: the account's state the policy checks judge it against.

Read inside the reserve transaction, under the account lock, so that concurrent orders on one
account see each other's reservations (a selector for the order path).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Account
from execution.models import TRADE_IN_FLIGHT, TRADE_IN_FLIGHT_OR_FILLED, Position, Trade, TradeReason, TradeStatus
from execution.services.adapters.base import PreTradeData
from execution.services.market_data import MarketSnapshot
from execution.services.risk import PlannedOrder, RiskContext


def risk_context(
    *,
    account: Account,
    plan: PlannedOrder,
    snapshot: MarketSnapshot,
    pre_trade: PreTradeData,
    position: Position | None,
    positions: list[Position],
) -> RiskContext:
    """What the policy checks need, read under the account lock (the reserve step holds it)."""
    last_entry_at = None
    if account.cooldown_seconds and not plan.only_reduces:
        last_entry_at = (
            Trade.objects.filter(account=account, reason=TradeReason.ENTRY, status__in=TRADE_IN_FLIGHT_OR_FILLED)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
    return RiskContext(
        account=account,
        plan=plan,
        snapshot=snapshot,
        position=position,
        # Paper: the wallet minus the isolated margin of open positions. Live: the exchange's
        # availableBalance, which already has the margin in use taken out.
        margin_in_use=sum((p.margin for p in positions), Decimal("0"))
        if pre_trade.available_balance is None
        else Decimal("0"),
        available_balance=account.paper_wallet if pre_trade.available_balance is None else pre_trade.available_balance,
        reserved_margin=Decimal("0") if plan.only_reduces else reserved_margin(account, pre_trade),
        last_entry_at=last_entry_at,
        tiers=pre_trade.tiers,
        now=timezone.now(),
        taker_fee_rate=settings.PAPER_TAKER_FEE_RATE,
        account_mode_refusal=pre_trade.account_mode_refusal,
    )


def reserved_margin(account: Account, pre_trade: PreTradeData) -> Decimal:
    """Margin held by the account's intents that the balance in hand does not show: those in
    flight (reserved, not booked) and, for a venue's balance, those filled since it was read.
    Read under the account lock, so concurrent orders see each other's reservations."""
    unbooked = Q(status__in=TRADE_IN_FLIGHT)
    if pre_trade.balance_as_of is not None:
        unbooked |= Q(status=TradeStatus.FILLED, filled_at__gte=pre_trade.balance_as_of)
    total = Trade.objects.filter(unbooked, account=account).aggregate(total=Sum("reserved_margin"))["total"]
    return total or Decimal("0")
