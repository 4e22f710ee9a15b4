"""Maintenance-margin tiers for paper positions.

leverageBracket is a signed endpoint, so paper accounts (no credentials) use this configured
default: Binance's historical BTCUSDT table as documented in ASTER_API.md section 5, with
max leverage capped by EXECUTION_MAX_LEVERAGE in the risk checks anyway.
"""

from __future__ import annotations

from decimal import Decimal

from execution.aster.replies import SymbolBrackets
from execution.services.position_math import MaintenanceTier

DEFAULT_TIERS: tuple[MaintenanceTier, ...] = tuple(
    MaintenanceTier(Decimal(floor), Decimal(cap), leverage, Decimal(mmr), Decimal(cum))
    for floor, cap, leverage, mmr, cum in (
        ("0", "50000", 125, "0.004", "0"),
        ("50000", "250000", 100, "0.005", "50"),
        ("250000", "1000000", 50, "0.01", "1300"),
        ("1000000", "10000000", 20, "0.025", "16300"),
        ("10000000", "20000000", 10, "0.05", "266300"),
        ("20000000", "50000000", 5, "0.10", "1266300"),
        ("50000000", "100000000", 4, "0.125", "2516300"),
        ("100000000", "200000000", 3, "0.15", "5016300"),
        ("200000000", "300000000", 2, "0.25", "25016300"),
        ("300000000", "500000000", 1, "0.50", "100016300"),
    )
)


def tiers_from_exchange(brackets: SymbolBrackets) -> tuple[MaintenanceTier, ...]:
    return tuple(
        MaintenanceTier(b.notional_floor, b.notional_cap, b.initial_leverage, b.maint_margin_ratio, b.cum)
        for b in brackets.brackets
    )


def default_tiers() -> tuple[MaintenanceTier, ...]:
    """The tiers of a position whose symbol's own table is unknown here (every paper position)."""
    return DEFAULT_TIERS
