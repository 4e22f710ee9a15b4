"""Position arithmetic for one-way USD-M linear perpetuals (ASTER_API.md section 6). Pure Decimal.

Sides: a position is LONG or SHORT; a fill is BUY or SELL. Quantities are absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0")
STORAGE_QUANTUM = Decimal("1e-10")  # the database keeps 10 decimal places


def q(value: Decimal) -> Decimal:
    """Round to what the database stores."""
    return value.quantize(STORAGE_QUANTUM)


def direction(side: str) -> int:
    """+1 for LONG/BUY, -1 for SHORT/SELL."""
    return 1 if side in ("LONG", "BUY") else -1


def position_side_for(order_side: str) -> str:
    return "LONG" if order_side == "BUY" else "SHORT"


def closing_side(position_side: str) -> str:
    return "SELL" if position_side == "LONG" else "BUY"


@dataclass(frozen=True)
class Holding:
    """What is held before or after a fill: side None when flat."""

    side: str | None
    quantity: Decimal
    entry_price: Decimal

    @classmethod
    def flat(cls) -> Holding:
        return cls(None, ZERO, ZERO)


@dataclass(frozen=True)
class FillOutcome:
    before: Holding
    after: Holding
    closed_quantity: Decimal  # part of the fill that reduced the old position
    opened_quantity: Decimal  # part that opened or added (the flip's remainder included)
    gross_realized_pnl: Decimal  # on the closed part, before fees

    @property
    def flipped(self) -> bool:
        return self.before.side is not None and self.after.side is not None and self.before.side != self.after.side

    @property
    def closed_everything(self) -> bool:
        return self.before.side is not None and self.after.side != self.before.side


def apply_fill(holding: Holding, *, side: str, quantity: Decimal, price: Decimal) -> FillOutcome:
    """The holding after a BUY/SELL of `quantity` at `price` (weighted entry on adds)."""
    if quantity <= 0 or price <= 0:
        raise ValueError("fill quantity and price must be positive")
    fill_side = position_side_for(side)
    if holding.side is None or holding.side == fill_side:
        total = holding.quantity + quantity
        entry = (holding.quantity * holding.entry_price + quantity * price) / total
        return FillOutcome(holding, Holding(fill_side, total, entry), ZERO, quantity, ZERO)
    closed = min(quantity, holding.quantity)
    gross = closed * (price - holding.entry_price) * direction(holding.side)
    remaining_old = holding.quantity - closed
    opened = quantity - closed
    if remaining_old > 0:
        after = Holding(holding.side, remaining_old, holding.entry_price)
    elif opened > 0:
        after = Holding(fill_side, opened, price)
    else:
        after = Holding.flat()
    return FillOutcome(holding, after, closed, opened, gross)


def taker_fee(quantity: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    return quantity * price * rate


def unrealized_pnl(side: str, quantity: Decimal, entry_price: Decimal, mark_price: Decimal) -> Decimal:
    return quantity * (mark_price - entry_price) * direction(side)


def initial_margin(quantity: Decimal, price: Decimal, leverage: int) -> Decimal:
    return quantity * price / leverage


def roe(side: str, quantity: Decimal, entry_price: Decimal, mark_price: Decimal, leverage: int) -> Decimal:
    """uPnL / (|size| x mark x IMR), IMR = 1 / leverage (ASTER_API.md section 6)."""
    margin = quantity * mark_price / leverage
    if margin == 0:
        return ZERO
    return unrealized_pnl(side, quantity, entry_price, mark_price) / margin


@dataclass(frozen=True)
class MaintenanceTier:
    notional_floor: Decimal
    notional_cap: Decimal
    max_leverage: int
    maint_margin_ratio: Decimal
    maint_amount: Decimal  # "cum"


def tier_for(tiers: Sequence[MaintenanceTier], notional: Decimal) -> MaintenanceTier:
    for tier in tiers:
        if tier.notional_floor <= notional < tier.notional_cap:
            return tier
    return tiers[-1]


def liquidation_price_for_tier(
    side: str, quantity: Decimal, entry_price: Decimal, wallet_balance: Decimal, tier: MaintenanceTier
) -> Decimal | None:
    """Binance's one-way isolated formula (ASTER_API.md 6):
    LP = (WB + cum - side*|Q|*EP) / (|Q|*MMR - side*|Q|); None when LP < 0 (no liquidation)."""
    s = direction(side)
    denominator = quantity * tier.maint_margin_ratio - s * quantity
    if denominator == 0:
        return None
    price = (wallet_balance + tier.maint_amount - s * quantity * entry_price) / denominator
    return price if price > 0 else None


def liquidation_price(
    side: str,
    quantity: Decimal,
    entry_price: Decimal,
    wallet_balance: Decimal,
    tiers: Sequence[MaintenanceTier],
) -> Decimal | None:
    """LP with MMR and cum from the tier that contains the notional *at the liquidation price*."""
    tier = tier_for(tiers, quantity * entry_price)
    for _ in range(len(tiers) + 1):
        price = liquidation_price_for_tier(side, quantity, entry_price, wallet_balance, tier)
        if price is None:
            return None
        at_liquidation = tier_for(tiers, quantity * price)
        if at_liquidation == tier:
            return price
        tier = at_liquidation
    return price


def maintenance_margin(quantity: Decimal, mark_price: Decimal, tiers: Sequence[MaintenanceTier]) -> Decimal:
    notional = quantity * mark_price
    tier = tier_for(tiers, notional)
    return notional * tier.maint_margin_ratio - tier.maint_amount


def is_liquidated(side: str, mark_price: Decimal, liquidation_price_value: Decimal | None) -> bool:
    if liquidation_price_value is None:
        return False
    return mark_price <= liquidation_price_value if side == "LONG" else mark_price >= liquidation_price_value


def funding_payment(side: str, quantity: Decimal, mark_price: Decimal, rate: Decimal) -> Decimal:
    """What the position pays (positive) or receives (negative): longs pay when the rate is positive."""
    return quantity * mark_price * rate * direction(side)
