"""The risk context of an order: the account's state the policy checks judge it against.

Read inside the reserve transaction, under the account lock, so that concurrent orders on one
account see each other's reservations (a selector for the order path). The reads themselves are
one statement (`order_sql.lock_for_reserve`); this module turns them into a `RiskContext`.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from execution.models import Position
from execution.services.adapters.base import PreTradeData
from execution.services.market_data import MarketSnapshot
from execution.services.order_sql import ReserveState
from execution.services.risk import PlannedOrder, RiskContext


def risk_context(
    *,
    state: ReserveState,
    plan: PlannedOrder,
    snapshot: MarketSnapshot,
    pre_trade: PreTradeData,
    position: Position | None,
) -> RiskContext:
    """What the policy checks need, read under the account lock (the reserve step holds it).

    Reserved margin: held by the account's intents that the balance in hand does not show,
    those in flight (reserved, not booked) and, for a venue's balance, those filled since it
    was read (`pre_trade.balance_as_of`, which `lock_for_reserve` was given)."""
    account = state.account
    return RiskContext(
        account=account,
        plan=plan,
        snapshot=snapshot,
        position=position,
        # Paper: the wallet minus the isolated margin of open positions. Live: the exchange's
        # availableBalance, which already has the margin in use taken out.
        margin_in_use=sum((p.margin for p in state.positions), Decimal("0"))
        if pre_trade.available_balance is None
        else Decimal("0"),
        available_balance=account.paper_wallet if pre_trade.available_balance is None else pre_trade.available_balance,
        reserved_margin=Decimal("0") if plan.only_reduces else state.reserved_margin,
        last_entry_at=state.last_entry_at if account.cooldown_seconds and not plan.only_reduces else None,
        tiers=pre_trade.tiers,
        now=timezone.now(),
        taker_fee_rate=settings.PAPER_TAKER_FEE_RATE,
        account_mode_refusal=pre_trade.account_mode_refusal,
    )
