"""Serializer fields for the API's input: strict about types and digits.

DRF's own fields are lenient: DecimalField and IntegerField go through Python's `Decimal()` and
`int()`, which take any Unicode digits ("١٢") and underscores ("1_000"); IntegerField takes
"5.0"; CharField takes a number (123 becomes "123") and trims whitespace; a related field's
`1.5` is looked up as 1. These fields refuse all of that with a field message:

- numbers: a JSON number, or a string of ASCII digits with an optional sign and fraction;
- integers and ids: a JSON integer, or a string of ASCII digits;
- strings: a JSON string, taken as it is (no trimming, no numbers).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account
from execution.api.filters import owned_accounts

ASCII_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
ASCII_INTEGER = re.compile(r"-?[0-9]+")
ASCII_ID = re.compile(r"[0-9]{1,19}")

DECIMAL_RULE = 'A number: a JSON number or a string of ASCII digits with an optional fraction, like "0.01".'
INTEGER_RULE = "A whole number: a JSON integer or a string of ASCII digits."
STRING_RULE = "A JSON string."


def _is_json_integer(data: Any) -> bool:
    return isinstance(data, int) and not isinstance(data, bool)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "format": "decimal"},
            {"type": "number"},
        ]
    }
)
class StrictDecimalField(serializers.DecimalField):
    default_error_messages = {"not_ascii_decimal": DECIMAL_RULE}

    def to_internal_value(self, data: Any) -> Decimal:
        text_ok = isinstance(data, str) and ASCII_DECIMAL.fullmatch(data) is not None
        if not (text_ok or _is_json_integer(data) or isinstance(data, Decimal)):
            self.fail("not_ascii_decimal")
        value: Decimal = super().to_internal_value(data)
        return value


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"not_ascii_integer": INTEGER_RULE}

    def to_internal_value(self, data: Any) -> int:
        text_ok = isinstance(data, str) and ASCII_INTEGER.fullmatch(data) is not None
        if not (text_ok or _is_json_integer(data)):
            self.fail("not_ascii_integer")
        value: int = super().to_internal_value(data)
        return value


class StrictRegexField(serializers.RegexField):
    """A string matching `regex`, taken as sent (no number converted to a string, no trimming)."""

    default_error_messages = {"not_a_string": STRING_RULE}

    def __init__(self, regex: str, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(regex, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        value: str = super().to_internal_value(data)
        return value


class OwnedAccountField(serializers.PrimaryKeyRelatedField[Account]):
    """An account id of the caller's (a JSON integer or ASCII digits): the browsable API's form
    offers only those, and another owner's id is refused like an unknown one."""

    default_error_messages = {"not_an_id": "An account id: a JSON integer or a string of ASCII digits."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("queryset", Account.objects.none())  # replaced per request by get_queryset
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Account]:
        return owned_accounts(self.context.get("request"))

    def to_internal_value(self, data: Any) -> Account:
        if not ((isinstance(data, str) and ASCII_ID.fullmatch(data)) or _is_json_integer(data)):
            self.fail("not_an_id")
        return super().to_internal_value(data)
