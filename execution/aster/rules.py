"""Symbol trading rules from exchangeInfo, and the rounding and checks they imply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execution.aster.errors import AsterInputError, AsterResponseError
from execution.aster.numbers import format_decimal, round_down_to_step, round_to_tick, wire_decimal

ZERO = Decimal("0")
# The symbols the service accepts (API, risk checks, client): upper-case letters and digits.
SYMBOL_PATTERN = r"^[A-Z0-9]{2,32}$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    status: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    liquidation_fee: Decimal
    trigger_protect: Decimal
    market_take_bound: Decimal
    order_types: tuple[str, ...]

    @property
    def tradable(self) -> bool:
        return self.status == "TRADING"

    def round_quantity(self, quantity: Decimal, *, market: bool) -> Decimal:
        """Round down to the step (MARKET_LOT_SIZE's for market orders)."""
        step = self.market_step_size if market else self.step_size
        return round_down_to_step(quantity, step)

    def round_price(self, price: Decimal) -> Decimal:
        return round_to_tick(price, self.tick_size)

    def check_quantity(self, quantity: Decimal, *, market: bool, field: str = "quantity") -> Decimal:
        """Round a quantity to the step and check min/max; raises AsterInputError."""
        rounded = self.round_quantity(quantity, market=market)
        low = self.market_min_qty if market else self.min_qty
        high = self.market_max_qty if market else self.max_qty
        if rounded <= 0:
            raise AsterInputError(field, f"{quantity} rounds to 0 with step {self.step_for(market)} on {self.symbol}")
        if rounded < low:
            raise AsterInputError(field, f"{format_decimal(rounded)} is below the minimum {low} on {self.symbol}")
        if high > 0 and rounded > high:
            raise AsterInputError(field, f"{format_decimal(rounded)} is above the maximum {high} on {self.symbol}")
        return rounded

    def check_price(self, price: Decimal, *, field: str = "price") -> Decimal:
        rounded = self.round_price(price)
        if rounded <= 0:
            raise AsterInputError(field, f"{price} rounds to 0 with tick {self.tick_size} on {self.symbol}")
        if self.min_price > 0 and rounded < self.min_price:
            raise AsterInputError(field, f"{format_decimal(rounded)} is below the minimum price {self.min_price}")
        if self.max_price > 0 and rounded > self.max_price:
            raise AsterInputError(field, f"{format_decimal(rounded)} is above the maximum price {self.max_price}")
        return rounded

    def step_for(self, market: bool) -> Decimal:
        return self.market_step_size if market else self.step_size

    def meets_min_notional(self, quantity: Decimal, mark_price: Decimal) -> bool:
        """MARKET orders are checked at the mark price; reduce-only orders are exempt (caller's choice)."""
        return quantity * mark_price >= self.min_notional


def _filters(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item.get("filterType", ""): item for item in raw.get("filters", []) if isinstance(item, dict)}


def _filter_value(filters: dict[str, dict[str, Any]], name: str, *keys: str, default: str = "0") -> Decimal:
    item = filters.get(name, {})
    for key in keys:
        if key in item and item[key] is not None:
            return wire_decimal(item[key], field=f"{name}.{key}")
    return Decimal(default)


def parse_symbol_rules(raw: dict[str, Any]) -> SymbolRules:
    if not isinstance(raw, dict) or "symbol" not in raw:
        raise AsterResponseError(f"exchangeInfo symbol entry without a symbol: {raw!r}"[:200])
    filters = _filters(raw)
    step = _filter_value(filters, "LOT_SIZE", "stepSize")
    min_qty = _filter_value(filters, "LOT_SIZE", "minQty")
    max_qty = _filter_value(filters, "LOT_SIZE", "maxQty")
    has_market_lot = "MARKET_LOT_SIZE" in filters
    order_types = raw.get("orderTypes") or raw.get("OrderType") or []
    return SymbolRules(
        symbol=str(raw["symbol"]),
        status=str(raw.get("status", "")),
        tick_size=_filter_value(filters, "PRICE_FILTER", "tickSize"),
        min_price=_filter_value(filters, "PRICE_FILTER", "minPrice"),
        max_price=_filter_value(filters, "PRICE_FILTER", "maxPrice"),
        step_size=step,
        min_qty=min_qty,
        max_qty=max_qty,
        market_step_size=_filter_value(filters, "MARKET_LOT_SIZE", "stepSize") if has_market_lot else step,
        market_min_qty=_filter_value(filters, "MARKET_LOT_SIZE", "minQty") if has_market_lot else min_qty,
        market_max_qty=_filter_value(filters, "MARKET_LOT_SIZE", "maxQty") if has_market_lot else max_qty,
        min_notional=_filter_value(filters, "MIN_NOTIONAL", "notional", "minNotional"),
        liquidation_fee=wire_decimal(raw.get("liquidationFee", "0"), field="liquidationFee"),
        trigger_protect=wire_decimal(raw.get("triggerProtect", "0"), field="triggerProtect"),
        market_take_bound=wire_decimal(raw.get("marketTakeBound", "0"), field="marketTakeBound"),
        order_types=tuple(str(t) for t in order_types),
    )


@dataclass(frozen=True)
class ExchangeInfo:
    symbols: dict[str, SymbolRules]
    weight_limit_1m: int | None

    def rules(self, symbol: str) -> SymbolRules:
        try:
            return self.symbols[symbol]
        except KeyError:
            raise AsterInputError("symbol", f"unknown symbol {symbol!r}") from None


def parse_exchange_info(raw: Any) -> ExchangeInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("symbols"), list):
        raise AsterResponseError("exchangeInfo reply has no symbols list")
    symbols = {rules.symbol: rules for rules in (parse_symbol_rules(item) for item in raw["symbols"])}
    weight_limit = None
    for limit in raw.get("rateLimits", []) or []:
        if isinstance(limit, dict) and limit.get("rateLimitType") == "REQUEST_WEIGHT":
            weight_limit = int(limit.get("limit", 0)) or None
    return ExchangeInfo(symbols=symbols, weight_limit_1m=weight_limit)
