"""Live reconciliation: the exchange is the truth, the database converges to it and says how.

`runs` holds the entry points and the order of repairs; `context` what a run works with;
`orders_repair`, `positions_repair` and `protection_repair` the repairs. The exchange is
reached only through the account's ExecutionAdapter.
"""

from execution.services.reconciliation.runs import (
    LEASE,
    accounts_due_for_reconciliation,
    claim_lease,
    live_account_ids,
    reconcile_account,
    reconcile_accounts,
    release_lease,
    streamed_account_ids,
)

__all__ = [
    "LEASE",
    "accounts_due_for_reconciliation",
    "claim_lease",
    "live_account_ids",
    "reconcile_account",
    "reconcile_accounts",
    "release_lease",
    "streamed_account_ids",
]
