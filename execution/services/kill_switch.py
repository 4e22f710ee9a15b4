"""The kill switch: halt an account, cancel its open entry orders, keep its protective stops.

Never cancel-all: a stop that protects an open position must survive a halt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from accounts.audit import record_event
from accounts.models import Account, TradingState
from accounts.services import set_trading_state
from execution.exceptions import ExecutionError
from execution.services.adapters.live import LiveExecutionAdapter

logger = logging.getLogger(__name__)


@dataclass
class HaltReport:
    cancelled: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def halt_trading(*, account: Account, reason: str = "", adapter: LiveExecutionAdapter | None = None) -> HaltReport:
    """Halt first (committed: no new order passes the risk checks from here on), then cancel
    the live account's resting entry orders one by one by client id."""
    account = set_trading_state(account=account, state=TradingState.HALTED, reason=reason)
    report = HaltReport()
    if account.is_paper_trading:
        return report  # paper entries are market orders; paper TP/SL stay armed
    adapter = adapter or LiveExecutionAdapter(account)
    for order in adapter.open_orders():
        if order.close_position or order.reduce_only:
            report.kept.append(order.client_order_id)
            continue
        try:
            adapter.cancel_order(symbol=order.symbol, client_order_id=order.client_order_id)
            report.cancelled.append(order.client_order_id)
        except ExecutionError as exc:
            report.errors.append(f"{order.client_order_id}: {exc}")
            logger.error("kill switch: could not cancel %s for account %s: %s", order.client_order_id, account.pk, exc)
    record_event(
        account=account,
        kind="account.halt_orders",
        message=reason,
        data={"cancelled": report.cancelled, "kept": report.kept, "errors": report.errors},
    )
    return report
