"""What one reconciliation run works with: the exchange's view (read once), the differences it
finds, and how a repair is recorded (and skipped in a dry run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from accounts.models import Account
from execution.aster.numbers import format_decimal
from execution.exceptions import ExecutionError, InvalidTransition
from execution.models import PendingOrder, Position, ReconciliationRun, Trade
from execution.services.adapters.base import ExecutionAdapter, RemoteOrder, RemotePosition
from execution.services.protection import cancel_legs_left_resting, place_on_exchange

logger = logging.getLogger(__name__)


@dataclass
class Difference:
    kind: str
    symbol: str
    local: dict[str, Any] = field(default_factory=dict)
    remote: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    outcome: str = ""
    message: str = ""


@dataclass
class Snapshot:
    """The exchange's view, read once per run."""

    positions: dict[str, RemotePosition]  # the one-way (positionSide BOTH) rows, by symbol
    orders: list[RemoteOrder]
    # Rows of a hedge-mode account (positionSide LONG/SHORT), keyed by (symbol, positionSide):
    # never merged into one position; each is a difference that fails closed.
    hedge_positions: dict[tuple[str, str], RemotePosition] = field(default_factory=dict)

    @property
    def hedge_symbols(self) -> set[str]:
        return {symbol for symbol, _ in self.hedge_positions}

    @property
    def open_client_ids(self) -> set[str]:
        return {o.client_order_id for o in self.orders}


@dataclass
class RunContext:
    account: Account
    adapter: ExecutionAdapter
    run: ReconciliationRun
    dry_run: bool
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    read_at: datetime | None = None  # when the exchange's view started to be read
    differences: list[Difference] = field(default_factory=list)
    cancelled_remote: set[str] = field(default_factory=set)  # client ids this run cancelled on the exchange
    placed_remote: set[str] = field(default_factory=set)  # client ids this run placed (not in the snapshot)

    def read_exchange(self) -> Snapshot:
        keyed = {(p.symbol, p.position_side): p for p in self.adapter.fetch_positions()}
        one_way = {symbol: p for (symbol, side), p in keyed.items() if side == "BOTH"}
        hedge = {key: p for key, p in keyed.items() if key[1] != "BOTH"}
        return Snapshot(one_way, self.adapter.open_orders(), hedge)

    def changed_since_read(self, row: Position | PendingOrder) -> bool:
        """The row was written after the exchange was read: the snapshot may not show it yet."""
        return self.read_at is not None and row.updated_at > self.read_at

    def cancel_remote(self, symbol: str, client_order_id: str) -> None:
        """Cancel on the exchange once per run (a leg can be reached by two repairs)."""
        if client_order_id not in self.cancelled_remote:
            self.adapter.cancel_order(symbol=symbol, client_order_id=client_order_id)
            self.cancelled_remote.add(client_order_id)

    def place(self, legs: list[PendingOrder]) -> None:
        """Place recorded legs on the exchange; later steps count them as resting."""
        place_on_exchange(adapter=self.adapter, account=self.account, orders=legs)
        self.placed_remote |= {leg.client_order_id for leg in legs}

    def resting(self, snapshot: Snapshot) -> set[str]:
        """Client ids resting on the exchange now: the snapshot's, less this run's cancels, plus its placements."""
        return (snapshot.open_client_ids - self.cancelled_remote) | self.placed_remote

    def cancel_left_resting(self) -> None:
        """Cancel at the exchange the legs a repair made final here; raise if any is left resting
        (it stays marked, and the next run retries it)."""
        marked = set(
            PendingOrder.objects.filter(account=self.account, venue_cancel_pending=True).values_list(
                "client_order_id", flat=True
            )
        )
        failed = cancel_legs_left_resting(adapter=self.adapter, account=self.account)
        self.cancelled_remote |= marked - {leg.client_order_id for leg in failed}  # no second cancel this run
        if failed:
            ids = ", ".join(leg.client_order_id for leg in failed)
            raise ExecutionError(f"could not cancel {ids} on the exchange", code="LEFT_RESTING")

    def repair(self, difference: Difference, action: str, repair: Callable[[], str | None]) -> None:
        """Record the difference; run its repair unless this is a dry run."""
        difference.action = action
        self.differences.append(difference)
        if self.dry_run:
            difference.outcome = "dry_run"
            return
        try:
            message = repair()
            difference.outcome, difference.message = "repaired", message or ""
        except (ExecutionError, InvalidTransition) as exc:  # a row changed under the repair: not repaired
            difference.outcome, difference.message = "failed", str(exc)
            logger.error(
                "reconciliation of account %s: %s %s failed: %s",
                self.account.pk,
                difference.kind,
                difference.symbol,
                exc,
            )


# --------------------------------------------------------------------------- views recorded on items


def position_view(position: Position) -> dict[str, Any]:
    return {
        "id": position.pk,
        "side": position.side,
        "quantity": format_decimal(position.quantity),
        "entry_price": format_decimal(position.entry_price),
        "leverage": position.leverage,
    }


def remote_position_view(remote: RemotePosition) -> dict[str, Any]:
    signed = remote.quantity if remote.side == "LONG" else -remote.quantity
    return {
        "positionAmt": format_decimal(signed),
        "entryPrice": format_decimal(remote.entry_price),
        "leverage": remote.leverage,
        "markPrice": str(remote.mark_price),
        "positionSide": remote.position_side,
    }


def leg_view(leg: PendingOrder) -> dict[str, Any]:
    return {
        "id": leg.pk,
        "kind": leg.kind,
        "client_order_id": leg.client_order_id,
        "trigger_price": str(leg.trigger_price),
        "status": leg.status,
    }


def order_view(order: RemoteOrder) -> dict[str, Any]:
    return {
        "clientOrderId": order.client_order_id,
        "type": order.type,
        "side": order.side,
        "stopPrice": str(order.stop_price),
        "closePosition": order.close_position,
        "reduceOnly": order.reduce_only,
    }


def trade_view(trade: Trade) -> dict[str, Any]:
    return {
        "client_order_id": trade.client_order_id,
        "side": trade.side,
        "quantity": str(trade.quantity),
        "status": trade.status,
    }
