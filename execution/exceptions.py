"""The errors the execution service raises. Callers catch ExecutionError for all of them."""

from __future__ import annotations

from typing import Any

from accounts.audit import InvalidTransition as InvalidTransition  # a bug or a race, not an execution failure


class ExecutionError(Exception):
    """Base of every failure the execution service reports."""

    code = "EXECUTION_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RiskCheckFailed(ExecutionError):
    """A pre-trade check denied the order. `.code` is one of RISK_CODES."""

    RISK_CODES = frozenset(
        {
            "TRADING_HALTED",
            "REDUCE_ONLY",
            "LEVERAGE_TOO_HIGH",
            "COOLDOWN_ACTIVE",
            "INSUFFICIENT_MARGIN",
            "MIN_NOTIONAL",
            "INVALID_QUANTITY",
            "UNKNOWN_SYMBOL",
            "INVALID_PROTECTION",
            "STALE_PRICE",
            "POSITION_MODE",
        }
    )

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        if code not in self.RISK_CODES:
            raise ValueError(f"unknown risk code {code!r}")
        super().__init__(message, code=code, details=details)


class PolicyDenied(RiskCheckFailed):
    """A denial by the account's risk policy (as opposed to bad input): it is audited."""


class InsufficientLiquidity(ExecutionError):
    code = "INSUFFICIENT_LIQUIDITY"


class OrderOutcomeUnknown(ExecutionError):
    """The order may or may not exist on the exchange; it is resolved by client order id."""

    code = "OUTCOME_UNKNOWN"


class ExchangeRejected(ExecutionError):
    code = "EXCHANGE_REJECTED"


class ProtectionFailed(ExecutionError):
    code = "PROTECTION_FAILED"


class IdempotencyMismatch(ExecutionError):
    """A known idempotency key came with a different payload: nothing was done (the API's 409)."""

    code = "IDEMPOTENCY_MISMATCH"


class StateConflict(ExecutionError):
    """The request is well formed but the object's state does not allow it (the API's 409 with
    `code`): NO_POSITION (close with nothing open), LEG_NOT_ACTIVE, PAPER_ONLY, ..."""

    code = "STATE_CONFLICT"


class NoPosition(StateConflict):
    """A close with no open position to close."""

    code = "NO_POSITION"
