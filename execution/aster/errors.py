"""One exception family for everything AsterDEX can say or fail to say.

The class tells the caller what to do:
- AsterInputError: the request was never sent; fix the argument.
- AsterInvalidRequest: the exchange refused it (4xx / code < 0); never retried.
  AsterInvalidListenKey (-1125) is the one a user-data stream catches: make a new key.
- AsterRateLimited: 429 or 418; no calls until `retry_at` (epoch seconds).
- AsterTransportError: the network or the exchange failed on a request that is safe to
  repeat; the client already retried a bounded number of times.
- AsterOutcomeUnknown: an order submission may or may not have been executed (timeout,
  HTTP 503, -1007). Resolve it by querying the client order id; never resend blindly.
- AsterResponseError: the reply could not be parsed.
"""

from __future__ import annotations

ERROR_NAMES: dict[int, str] = {
    -1000: "UNKNOWN",
    -1001: "DISCONNECTED",
    -1003: "TOO_MANY_REQUESTS",
    -1007: "TIMEOUT",
    -1015: "TOO_MANY_ORDERS",
    -1021: "INVALID_TIMESTAMP",
    -1022: "INVALID_SIGNATURE",
    -1102: "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
    -1106: "PARAM_NOT_REQUIRED",
    -1111: "BAD_PRECISION",
    -1116: "INVALID_ORDER_TYPE",
    -1121: "BAD_SYMBOL",
    -1125: "INVALID_LISTEN_KEY",
    -1130: "INVALID_PARAMETER",
    -2010: "NEW_ORDER_REJECTED",
    -2011: "CANCEL_REJECTED",
    -2013: "NO_SUCH_ORDER",
    -2014: "BAD_API_KEY_FMT",
    -2015: "REJECTED_MBX_KEY",
    -2018: "BALANCE_NOT_SUFFICIENT",
    -2019: "MARGIN_NOT_SUFFICIENT",
    -2021: "ORDER_WOULD_IMMEDIATELY_TRIGGER",
    -2022: "REDUCE_ONLY_REJECT",
    -2024: "POSITION_NOT_SUFFICIENT",
    -2025: "MAX_OPEN_ORDER_EXCEEDED",
    -2027: "MAX_LEVERAGE_RATIO",
    -2028: "MIN_LEVERAGE_RATIO",
    -4003: "QTY_LESS_THAN_ZERO",
    -4004: "QTY_LESS_THAN_MIN_QTY",
    -4005: "QTY_GREATER_THAN_MAX_QTY",
    -4013: "PRICE_LESS_THAN_MIN_PRICE",
    -4014: "PRICE_NOT_INCREASED_BY_TICK_SIZE",
    -4015: "INVALID_CL_ORD_ID_LEN",
    -4023: "QTY_NOT_INCREASED_BY_STEP_SIZE",
    -4028: "INVALID_LEVERAGE",
    -4046: "NO_NEED_TO_CHANGE_MARGIN_TYPE",
    -4059: "NO_NEED_TO_CHANGE_POSITION_SIDE",
    -4116: "DUPLICATED_CLIENT_ORDER_ID",
    -4131: "MARKET_ORDER_REJECT",
    -4137: "QUANTITY_EXISTS_WITH_CLOSE_POSITION",
    -4138: "REDUCE_ONLY_MUST_BE_TRUE",
    -4142: "REJECT_TP_SL_TRIGGERED_IMMEDIATELY",
    -4164: "MIN_NOTIONAL",
    -4225: "NONCE_EXPIRED",
}


class AsterError(Exception):
    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        super().__init__(message)

    @property
    def code_name(self) -> str:
        return ERROR_NAMES.get(self.code, "") if self.code is not None else ""

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            name = f" {self.code_name}" if self.code_name else ""
            parts.append(f"[{self.code}{name}]")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        parts.append(self.message)
        return " ".join(parts)


class AsterInputError(AsterError, ValueError):
    """Bad input caught before any request was sent."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class AsterInvalidRequest(AsterError):
    """The exchange refused the request. Retrying the same request cannot help."""


class AsterInvalidListenKey(AsterInvalidRequest):
    """-1125: the listenKey does not exist (expired or closed): create a new one."""


class AsterRateLimited(AsterError):
    def __init__(self, message: str, *, retry_at: float, code: int | None = None, http_status: int | None = None):
        super().__init__(message, code=code, http_status=http_status)
        self.retry_at = retry_at


class AsterTransportError(AsterError):
    """Network failure or 5xx on a request that is safe to repeat (after bounded retries)."""


class AsterOutcomeUnknown(AsterError):
    """An order submission whose outcome is unknown: resolve by client order id."""

    def __init__(self, message: str, *, client_order_id: str, code: int | None = None, http_status: int | None = None):
        super().__init__(message, code=code, http_status=http_status)
        self.client_order_id = client_order_id


class AsterResponseError(AsterError):
    """The exchange answered something this client cannot parse."""
