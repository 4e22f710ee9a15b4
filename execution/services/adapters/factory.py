from __future__ import annotations

from accounts.models import Account
from execution.services.adapters.base import ExecutionAdapter
from execution.services.adapters.live import LiveExecutionAdapter
from execution.services.adapters.paper import PaperExecutionAdapter


def get_execution_adapter(account: Account) -> ExecutionAdapter:
    """PaperExecutionAdapter for paper accounts, LiveExecutionAdapter otherwise."""
    if account.is_paper_trading:
        return PaperExecutionAdapter(account)
    return LiveExecutionAdapter(account)
