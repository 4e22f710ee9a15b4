"""Orders whose outcome the venue did not say (timeout, HTTP 503, -1007): ask, never resend.

The order path (right after the ambiguous submission) and reconciliation (later) both resolve
an `unknown` intent the same way: query the venue by the intent's client order id, a bounded
number of times with backoff. A resubmission under a new id could double the position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from execution.exceptions import ExecutionError
from execution.models import Trade
from execution.services.adapters.base import ExecutionAdapter, Fill

logger = logging.getLogger(__name__)

UNKNOWN_QUERY_DELAYS = (0.25, 0.5, 1.0, 2.0)


def resolve_by_client_id(
    adapter: ExecutionAdapter, trade: Trade, *, sleep: Callable[[float], None] = time.sleep
) -> Fill | str:
    """A Fill if the exchange executed the order, 'not_filled' if it knows it and it did not
    execute, 'unknown' if it still cannot say (not found yet, or unreachable)."""
    for attempt, delay in enumerate(UNKNOWN_QUERY_DELAYS):
        if attempt:
            sleep(delay)
        try:
            order = adapter.lookup_order(symbol=trade.symbol, client_order_id=trade.client_order_id)
        except ExecutionError as exc:
            logger.warning("query of %s failed (%s); will retry", trade.client_order_id, exc)
            continue
        if order is None or order.is_open:
            continue
        fill = adapter.fill_of(order)
        return fill if fill is not None else "not_filled"
    return "unknown"
