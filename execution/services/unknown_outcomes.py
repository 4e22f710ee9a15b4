"""Orders whose outcome the venue did not say (timeout, HTTP 503, -1007): ask, never resend.

The order path (right after the ambiguous submission) and reconciliation (later) both resolve an
intent the same way: query the venue by the intent's client order id, a bounded number of times
with backoff. A resubmission under a new id could double the position.

"No such order" is final only when the venue can no longer accept the submission: its
freshness window (V1 recvWindow, V3 nonce) has passed since the request was signed at the latest
(when its failure marked the intent `unknown`), plus a margin, and two reads some seconds apart
agree. The intent is then `expired`: never executed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from execution.exceptions import ExchangeRejected, ExecutionError
from execution.models import Trade, TradeStatus
from execution.services.adapters.base import ExecutionAdapter, Fill

logger = logging.getLogger(__name__)

UNKNOWN_QUERY_DELAYS = (0.25, 0.5, 1.0, 2.0)
CONFIRM_GAP_SECONDS = 2.0  # two "no such order" reads at least this far apart
WINDOW_MARGIN_SECONDS = 5.0  # between writing the intent and signing the request, clock skew

Outcome = Fill | Literal["not_filled", "expired", "unknown"]


def resolve_by_client_id(
    adapter: ExecutionAdapter,
    trade: Trade,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """A Fill if the venue executed the order; 'not_filled' if it knows it and it did not
    execute; 'expired' if it never saw it and can no longer accept it; 'unknown' if it still
    cannot say (not found yet, or unreachable)."""
    # The request was signed at the latest when its failure marked the intent `unknown` (after
    # any set-up calls and waits); a `submitting` intent of a dead process has only its creation.
    signed_by = trade.updated_at if trade.status == TradeStatus.UNKNOWN else trade.created_at
    deadline = signed_by.timestamp() + adapter.submission_window_seconds + WINDOW_MARGIN_SECONDS
    first_missing: float | None = None
    for attempt, delay in enumerate(UNKNOWN_QUERY_DELAYS):
        if attempt:
            sleep(delay)
        try:
            order = adapter.lookup_order(symbol=trade.symbol, client_order_id=trade.client_order_id)
        except ExecutionError as exc:
            logger.warning("query of %s failed (%s); will retry", trade.client_order_id, exc)
            continue
        if order is None:
            now = clock()
            first_missing = now if first_missing is None else first_missing
            if now > deadline and now - first_missing >= CONFIRM_GAP_SECONDS:
                return "expired"
            continue
        if order.is_open:
            continue
        fill = adapter.fill_of(order)
        return fill if fill is not None else "not_filled"
    return "unknown"


def expired_error(trade: Trade) -> ExchangeRejected:
    """The final answer for an intent the venue never saw and can no longer accept."""
    return ExchangeRejected(
        f"{trade.client_order_id}: the exchange never received it and its window has passed (not executed)",
        code="EXPIRED_UNKNOWN",
    )
