"""Live accounts follow the exchange through their user-data streams (issue 12).

ORDER_TRADE_UPDATE and ACCOUNT_UPDATE events are applied through the same ledger and
protection services as the order path and reconciliation (`order_fills`, `order_closures`,
`account_updates`), one account's events in order (`applier`). Reconciliation stays the
safety net: it runs on every connect (`resync_account`) and on beat.
"""

from execution.services.user_stream.applier import (
    AccountEventApplier,
    ApplierCounters,
    apply_user_event,
    resync_account,
)
from execution.services.user_stream.outcome import Applied, UserEventRejected

__all__ = [
    "AccountEventApplier",
    "Applied",
    "ApplierCounters",
    "UserEventRejected",
    "apply_user_event",
    "resync_account",
]
