"""What applying one user-data event did, and the refusal of an event that does not fit."""

from __future__ import annotations

from dataclasses import dataclass, field

from execution.exceptions import ExecutionError


class UserEventRejected(ExecutionError):
    """An event that parsed but contradicts what it names (say, a fill of our stop on another
    symbol or side): counted, logged, and nothing is written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="USER_EVENT_REJECTED")


@dataclass
class Applied:
    """`action` says what happened (booked, duplicate, recorded, repaired, ...); `reconcile`
    asks the caller for a reconciliation of the account now (after this event's commit)."""

    action: str
    reconcile: bool = False
    detail: str = ""
    mismatches: list[str] = field(default_factory=list)
