"""Decimal parsing and formatting for the wire: strings in, strings out, never floats."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from execution.aster.errors import AsterInputError, AsterResponseError


def wire_decimal(value: Any, *, field: str) -> Decimal:
    """Parse a number from an exchange reply (strings, or JSON numbers for brackets)."""
    if isinstance(value, bool) or value is None:
        raise AsterResponseError(f"{field}: expected a number, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise AsterResponseError(f"{field}: expected a number, got {value!r}") from None
    if not result.is_finite():
        raise AsterResponseError(f"{field}: expected a finite number, got {value!r}")
    return result


def input_decimal(value: Any, *, field: str, positive: bool = True) -> Decimal:
    """Parse a caller's number. Floats are refused: money travels as Decimal or str."""
    if isinstance(value, bool | float) or value is None:
        raise AsterInputError(field, f"must be a Decimal or a numeric string, got {value!r}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise AsterInputError(field, f"is not a number: {value!r}") from None
    if not result.is_finite():
        raise AsterInputError(field, f"must be finite, got {value!r}")
    if positive and result <= 0:
        raise AsterInputError(field, f"must be greater than 0, got {result}")
    return result


def format_decimal(value: Decimal) -> str:
    """Plain notation without exponent or trailing zeros: Decimal('1E+2') -> '100'."""
    text = format(value.normalize(), "f")
    return text


def round_down_to_step(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_to_tick(value: Decimal, tick: Decimal) -> Decimal:
    if tick <= 0:
        return value
    return (value / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick
