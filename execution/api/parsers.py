"""The API's JSON parser: exact numbers, and no body nested deeper than any request of ours needs.

- JSON numbers with a fraction or exponent are read as Decimal, never through a float (money is
  Decimal from the wire on), so `0.1` is exactly 0.1.
- NaN and Infinity are refused, as DRF's strict parser does.
- DRF's parser let json's RecursionError through (a 500) for a body nested about 1000 deep;
  here that, and anything deeper than MAX_JSON_DEPTH, is a 400 saying so.

The body's size is capped before any parser runs (execution.api.middleware).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import IO, Any, NoReturn

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep."


class BoundedJSONParser(JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.load(codecs.getreader(encoding)(stream), parse_float=Decimal, parse_constant=_refuse_constant)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ValueError as exc:  # malformed JSON, undecodable bytes, NaN/Infinity
            raise ParseError(f"JSON parse error - {exc}") from None
        if nested_deeper_than(data, MAX_JSON_DEPTH):
            raise ParseError(TOO_DEEP)
        return data


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` (parsed JSON) has containers more than `limit` levels deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
