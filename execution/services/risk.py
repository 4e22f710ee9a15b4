"""Pre-trade checks, one module for both modes, run in the reserve step under the account lock.

Two kinds of refusal:
- input refusals (malformed arguments: ValidationError; or INVALID_QUANTITY, UNKNOWN_SYMBOL,
  INVALID_PROTECTION — including a stop-loss at or beyond the liquidation price of the position
  after the order —, leverage outside 1..EXECUTION_MAX_LEVERAGE): nothing is written;
- policy denials (POSITION_MODE: the exchange account is in hedge mode, or Multi-Assets mode
  against isolated margin, and would not switch; TRADING_HALTED, REDUCE_ONLY, LEVERAGE_TOO_HIGH for the account's or the
  bracket's cap, COOLDOWN_ACTIVE, INSUFFICIENT_MARGIN, MIN_NOTIONAL, STALE_PRICE): the service
  records one `order.denied` audit event and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.display import plain_decimal
from accounts.models import Account, MarginType, TradingState
from execution.aster.rules import SYMBOL_RE, SymbolRules
from execution.exceptions import PolicyDenied, RiskCheckFailed
from execution.models import Position
from execution.services.adapters.base import AccountModeRefusal
from execution.services.market_data import MarketSnapshot, check_fresh
from execution.services.position_math import (
    MaintenanceTier,
    direction,
    liquidation_price,
    position_side_for,
    tier_for,
)


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: str
    quantity: Decimal
    leverage: int
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    reduce_only: bool = False


def _decimal(value: Any, field: str, *, required: bool) -> Decimal | None:
    if value is None:
        if required:
            raise ValidationError({field: ValidationError("This field is required.", code="required")})
        return None
    if isinstance(value, bool | float):
        raise ValidationError({field: ValidationError("Must be a Decimal or a numeric string.", code="invalid")})
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError({field: ValidationError(f"Not a number: {value!r}.", code="invalid")}) from None
    if not number.is_finite():
        raise ValidationError({field: ValidationError("Must be finite.", code="invalid")})
    return number


def parse_order_request(
    *,
    symbol: Any,
    side: Any,
    quantity: Any,
    leverage: Any,
    take_profit: Any = None,
    stop_loss: Any = None,
    reduce_only: bool = False,
) -> OrderRequest:
    """Type checks of the caller's arguments. Raises ValidationError (per field, with codes)."""
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise ValidationError({"symbol": ValidationError("Must be a symbol like BTCUSDT.", code="invalid_symbol")})
    if side not in ("BUY", "SELL"):
        raise ValidationError({"side": ValidationError("Must be BUY or SELL.", code="invalid_side")})
    if not isinstance(leverage, int) or isinstance(leverage, bool):
        raise ValidationError({"leverage": ValidationError("Must be an integer.", code="invalid_leverage")})
    amount = _decimal(quantity, "quantity", required=True)
    assert amount is not None
    if amount <= 0:
        raise RiskCheckFailed("INVALID_QUANTITY", f"quantity must be greater than 0, got {amount}")
    if leverage < 1:
        raise ValidationError({"leverage": ValidationError("Must be at least 1.", code="invalid_leverage")})
    if leverage > settings.EXECUTION_MAX_LEVERAGE:
        raise RiskCheckFailed(
            "LEVERAGE_TOO_HIGH", f"leverage {leverage}x is above the global cap of {settings.EXECUTION_MAX_LEVERAGE}x"
        )
    tp = _decimal(take_profit, "take_profit", required=False)
    sl = _decimal(stop_loss, "stop_loss", required=False)
    for name, price in (("take_profit", tp), ("stop_loss", sl)):
        if price is not None and price <= 0:
            raise RiskCheckFailed("INVALID_PROTECTION", f"{name} must be greater than 0, got {price}")
    return OrderRequest(symbol, side, amount, leverage, tp, sl, reduce_only)


@dataclass(frozen=True)
class PlannedOrder:
    """The request after rounding to the symbol's filters, with what it does to the position."""

    request: OrderRequest
    quantity: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None
    reduces_quantity: Decimal  # part that reduces the open opposite position
    opens_quantity: Decimal  # part that opens or adds
    resulting_side: str | None

    @property
    def only_reduces(self) -> bool:
        return self.opens_quantity == 0


def plan_order(request: OrderRequest, rules: SymbolRules, position: Position | None) -> PlannedOrder:
    """Round and classify the order; INVALID_QUANTITY / INVALID_PROTECTION refusals."""
    quantity = rules.round_quantity(request.quantity, market=True)
    if quantity <= 0 or quantity < rules.market_min_qty:
        raise RiskCheckFailed(
            "INVALID_QUANTITY",
            f"{request.quantity} rounds to {quantity} with step {rules.market_step_size}; "
            f"the minimum is {rules.market_min_qty}",
        )
    if rules.market_max_qty > 0 and quantity > rules.market_max_qty:
        raise RiskCheckFailed("INVALID_QUANTITY", f"{quantity} is above the maximum {rules.market_max_qty}")
    order_side = position_side_for(request.side)
    reduces = Decimal("0")
    if position is not None and position.side != order_side:
        reduces = min(quantity, position.quantity)
    opens = quantity - reduces
    if request.reduce_only and opens > 0:
        raise RiskCheckFailed("INVALID_QUANTITY", "a reduce-only order cannot be larger than the open position")
    if opens > 0:
        resulting: str | None = order_side
    elif position is not None and reduces < position.quantity:
        resulting = position.side
    else:
        resulting = None
    tp = rules.round_price(request.take_profit) if request.take_profit is not None else None
    sl = rules.round_price(request.stop_loss) if request.stop_loss is not None else None
    if (tp is not None or sl is not None) and opens == 0:
        raise RiskCheckFailed("INVALID_PROTECTION", "take-profit and stop-loss go with orders that open or add")
    return PlannedOrder(request, quantity, tp, sl, reduces, opens, resulting)


def check_protection(plan: PlannedOrder, mark_price: Decimal) -> None:
    """A long's stop below the mark and its take-profit above it; mirrored for shorts."""
    if plan.resulting_side is None:
        return
    sign = direction(plan.resulting_side)
    if plan.stop_loss is not None and (plan.stop_loss - mark_price) * sign >= 0:
        where = "below" if sign > 0 else "above"
        raise RiskCheckFailed(
            "INVALID_PROTECTION",
            f"stop_loss {plain_decimal(plan.stop_loss)} must be {where} the mark price {plain_decimal(mark_price)}"
            f" for a {plan.resulting_side}",
        )
    if plan.take_profit is not None and (plan.take_profit - mark_price) * sign <= 0:
        where = "above" if sign > 0 else "below"
        raise RiskCheckFailed(
            "INVALID_PROTECTION",
            f"take_profit {plain_decimal(plan.take_profit)} must be {where} the mark price {plain_decimal(mark_price)}"
            f" for a {plan.resulting_side}",
        )


def check_stop_before_liquidation(ctx: RiskContext) -> None:
    """A stop-loss must trigger before the position it protects is liquidated: one at or beyond
    the liquidation price of the position *after this order* would never fire (the position is
    liquidated first and loses its whole margin). INVALID_PROTECTION, naming the price."""
    stop = ctx.plan.stop_loss
    side = ctx.plan.resulting_side
    if stop is None or side is None:
        return
    liquidation = projected_liquidation_price(ctx)
    refuse_stop_beyond_liquidation(side=side, stop_loss=stop, liquidation_price=liquidation)


def refuse_stop_beyond_liquidation(*, side: str, stop_loss: Decimal, liquidation_price: Decimal | None) -> None:
    """The rule itself, for new orders and for amended protection alike."""
    if liquidation_price is None:
        return
    if (stop_loss - liquidation_price) * direction(side) <= 0:
        where = "above" if side == "LONG" else "below"
        raise RiskCheckFailed(
            "INVALID_PROTECTION",
            f"stop_loss {plain_decimal(stop_loss)} is at or beyond the liquidation price {liquidation_price:.2f}"
            f" of the {side}; "
            f"it must be {where} it",
            details={"liquidation_price": str(liquidation_price)},
        )


def projected_liquidation_price(ctx: RiskContext) -> Decimal | None:
    """The liquidation price of the position once this order has filled at the mark: the open
    quantity added to a same-side position (weighted entry), or a new position.
    Isolated: the position's own margin backs it. Cross: the free balance backs it too."""
    plan = ctx.plan
    if plan.resulting_side is None or plan.opens_quantity == 0:
        return None
    mark = ctx.snapshot.mark_price
    quantity, entry = plan.opens_quantity, mark
    position = ctx.position
    if position is not None and position.side == plan.resulting_side and position.quantity > 0:
        total = position.quantity + quantity
        entry = (position.entry_price * position.quantity + mark * quantity) / total
        quantity = total
    # As the ledger books it (and the exchange sets it per symbol): the order's leverage applies to
    # the whole position.
    margin = quantity * entry / plan.request.leverage
    if ctx.account.margin_type == MarginType.CROSSED:
        free = ctx.available_balance - ctx.margin_in_use - ctx.reserved_margin - required_margin(ctx)
        margin += max(free, Decimal("0"))
    return liquidation_price(plan.resulting_side, quantity, entry, margin, ctx.tiers)


@dataclass(frozen=True)
class RiskContext:
    account: Account
    plan: PlannedOrder
    snapshot: MarketSnapshot
    position: Position | None
    margin_in_use: Decimal
    available_balance: Decimal  # paper: wallet; live: the exchange's availableBalance
    reserved_margin: Decimal  # held by the account's intents that the balance does not show yet
    last_entry_at: datetime | None
    tiers: Sequence[MaintenanceTier]
    now: datetime
    taker_fee_rate: Decimal
    safety_close: bool = False  # the service closing a position it could not protect
    account_mode_refusal: AccountModeRefusal | None = None  # live: the venue account's mode is not tradable


def check_account_mode(ctx: RiskContext) -> None:
    """Every order, closes too: in hedge mode the exchange wants positionSide LONG/SHORT and
    refuses reduceOnly, so one-way orders would be refused or open the wrong leg."""
    refusal = ctx.account_mode_refusal
    if refusal is None:
        return
    raise RiskCheckFailed(
        "POSITION_MODE",
        refusal.message,
        details={"mode": refusal.mode, "exchange_code": refusal.exchange_code, "exchange_msg": refusal.exchange_msg},
    )


def check_trading_state(ctx: RiskContext) -> None:
    state = ctx.account.trading_state
    if state == TradingState.HALTED and ctx.safety_close and ctx.plan.only_reduces:
        return  # a halt stops new risk; it must not keep an unprotected position open
    if state == TradingState.HALTED:
        raise RiskCheckFailed("TRADING_HALTED", f"account {ctx.account.pk} is halted: no new orders")
    if state == TradingState.REDUCING and not ctx.plan.only_reduces:
        raise RiskCheckFailed("REDUCE_ONLY", f"account {ctx.account.pk} may only reduce open positions")


def check_leverage(ctx: RiskContext) -> None:
    leverage = ctx.plan.request.leverage
    cap = min(ctx.account.max_leverage, settings.EXECUTION_MAX_LEVERAGE)
    if leverage > cap:
        raise RiskCheckFailed("LEVERAGE_TOO_HIGH", f"leverage {leverage}x is above the account's cap of {cap}x")
    if ctx.plan.only_reduces:
        return
    held = ctx.position.quantity if ctx.position is not None and ctx.position.side == ctx.plan.resulting_side else 0
    notional = (held + ctx.plan.opens_quantity) * ctx.snapshot.mark_price
    tier = tier_for(ctx.tiers, notional)
    if leverage > tier.max_leverage:
        raise RiskCheckFailed(
            "LEVERAGE_TOO_HIGH",
            f"leverage {leverage}x is above the bracket maximum {tier.max_leverage}x for a notional of {notional:.2f}",
        )


def check_cooldown(ctx: RiskContext) -> None:
    cooldown = ctx.account.cooldown_seconds
    if not cooldown or ctx.plan.only_reduces or ctx.last_entry_at is None:
        return
    elapsed = (ctx.now - ctx.last_entry_at).total_seconds()
    if elapsed < cooldown:
        remaining = cooldown - elapsed
        raise RiskCheckFailed(
            "COOLDOWN_ACTIVE",
            f"cooldown active: {remaining:.0f} s remaining of {cooldown} s since the last entry",
            details={"remaining_seconds": round(remaining, 3)},
        )


def check_min_notional(ctx: RiskContext) -> None:
    if ctx.plan.only_reduces:  # reduce-only orders are exempt, as on the exchange
        return
    mark, minimum = ctx.snapshot.mark_price, ctx.snapshot.rules.min_notional
    notional = ctx.plan.quantity * mark
    if notional < minimum:
        raise RiskCheckFailed("MIN_NOTIONAL", f"notional {notional:.4f} at mark {mark} is below the minimum {minimum}")


def required_margin(ctx: RiskContext) -> Decimal:
    """The margin the order opens and its taker fee: what its intent reserves (0 to reduce)."""
    if ctx.plan.only_reduces:
        return Decimal("0")
    opens_notional = ctx.plan.opens_quantity * ctx.snapshot.mark_price
    return opens_notional / ctx.plan.request.leverage + ctx.plan.quantity * ctx.snapshot.mark_price * ctx.taker_fee_rate


def check_margin(ctx: RiskContext) -> None:
    if ctx.plan.only_reduces:
        return
    required = required_margin(ctx)
    available = ctx.available_balance - ctx.margin_in_use - ctx.reserved_margin
    if required > available:
        raise RiskCheckFailed(
            "INSUFFICIENT_MARGIN",
            f"needs {required:.4f} USDT of margin and fees; {available:.4f} available",
            details={"required": str(required), "available": str(available)},
        )


POLICY_CHECKS = (
    check_account_mode,
    check_trading_state,
    check_leverage,
    check_cooldown,
    check_min_notional,
    check_margin,
)


def run_policy_checks(ctx: RiskContext) -> None:
    """The account's policy; a denial is raised as PolicyDenied (audited by the caller)."""
    try:
        check_fresh(ctx.snapshot.time_ms, what="the mark price", now=ctx.now.timestamp())
        for check in POLICY_CHECKS:
            check(ctx)
    except RiskCheckFailed as denial:
        raise PolicyDenied(denial.code, denial.message, details=denial.details) from None
