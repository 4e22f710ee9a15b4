"""The list endpoints' pagination: `limit` and `offset` are bounded integers.

DRF's LimitOffsetPagination takes any size of integer (psycopg then fails with "bigint out of
range", a 500) and quietly falls back to the default for a malformed value. Here a value out of
its range, or anything but ASCII digits, is a 400 naming the parameter and its range.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
_DIGITS = re.compile(r"[0-9]{1,19}")


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT
    max_offset = MAX_OFFSET

    def get_limit(self, request: Request) -> int:
        if self.default_limit is None:  # pragma: no cover - PAGE_SIZE is set
            raise exceptions.APIException("PAGE_SIZE is not configured.")
        return _bounded(request, self.limit_query_param, default=self.default_limit, low=1, high=self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _bounded(request, self.offset_query_param, default=0, low=0, high=self.max_offset)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": self.max_offset, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
            parameter["description"] += " Out of range or not an integer: 400."
        return parameters


def _bounded(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"Must be an integer from {low} to {high}."]})
    return int(raw)
