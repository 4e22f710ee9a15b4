"""How figures and times read on people's screens (admin pages, object titles).

Money columns hold 10 decimal places, so a stored value reads back as `65095.6000000000`, and a
zero as `Decimal('0E-10')`, whose `str()` is `0E-10`. `plain_decimal` is the one place that turns
such a value into what a person expects (`65095.6`, `0`). Not for the wire: the API keeps its
fixed-point strings, and the exchange client has its own formatting.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

EMPTY = "-"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# A Decimal written as a string (exchange replies, audit data): "65095.6000000000", or "0E-10"
# (DjangoJSONEncoder writes str(Decimal)). Strings of digits alone (ids) are left as they are.
DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?[eE][-+]?\d+|-?\d+\.\d+")


def plain_decimal(value: Decimal | float | None) -> str:
    """Plain notation, no exponent, no trailing zeros, no negative zero:
    Decimal('65095.6000000000') -> '65095.6', Decimal('0E-10') -> '0', Decimal('1E+2') -> '100'.
    A float (a duration, never money) is read by its shortest repr: 0.0 -> '0'."""
    if value is None:
        return EMPTY
    if isinstance(value, float):
        value = Decimal(repr(value))
    if value.is_zero():  # also -0E-10, which normalize() would keep as "-0"
        return "0"
    return format(value.normalize(), "f")


def plain_time(value: datetime | None) -> str:
    """A timestamp to the second, in the current time zone (UTC unless the site says otherwise)."""
    if value is None:
        return EMPTY
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(TIME_FORMAT)


def plain_json(value: Any) -> str:
    """A JSON document (audit data, reconciliation rows) with its numbers in plain notation:
    Decimals, and strings that are fixed-point numbers, go through `plain_decimal`."""
    return json.dumps(_plain(value), ensure_ascii=False, cls=DjangoJSONEncoder)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, str) and DECIMAL_TEXT.fullmatch(value):
        return plain_decimal(Decimal(value))
    return value
