"""A secret string that never shows itself: the one `Secret` type of the project.

A plain library (no Django, nothing of ours): the account model stores secrets as `Secret`
(`accounts.encrypted_fields`) and the exchange client signs with them (`execution.aster.signing`),
and neither has to import the other.
"""

from __future__ import annotations

from typing import Any

MASK = "********"


class Secret:
    """A secret string that never shows itself except through `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return f"Secret({MASK})" if self._value else "Secret(<empty>)"

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __reduce__(self) -> Any:  # pickling would write the plain value somewhere
        raise TypeError("Secret values cannot be pickled.")


def as_secret(value: str | Secret | None) -> Secret:
    if isinstance(value, Secret):
        return value
    return Secret(value or "")
