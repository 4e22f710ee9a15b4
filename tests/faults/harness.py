"""The fault matrix's pieces: what each target does, how a fault is aimed at it, and the one
checker of the end state (`end_state_violations`).

A target is one step of a live account's life on the simulator (the entry, a protective leg,
a cancel, a close), with the clean steps it needs first. A fault is one of the simulator's aimed
rules (see execution/aster/simulator/faults.py), or `db_drop`: the web process loses its
PostgreSQL backend right after the exchange accepted the target's request, so that every SQL
statement fails until the service call returns (as a dropped connection would).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import OperationalError, connection

from accounts.models import Account
from execution.aster.client import AsterClient
from execution.aster.simulator.faults import FaultRule, OrderFacts
from execution.aster.simulator.server import AsterSimulator
from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services import ExecutionService
from execution.services.exchange import weight_budget

SYMBOL = "BTCUSDT"
ENTRY = {
    "symbol": SYMBOL,
    "side": "BUY",
    "quantity": "0.01",
    "leverage": 5,
    "take_profit": "70000",
    "stop_loss": "60000",
}
ADD = {**ENTRY, "take_profit": "71000", "stop_loss": "61000"}  # a second entry that replaces the protection

HTTP_FAULTS = ("503_after_accept", "drop_after_accept", "read_timeout", "429", "418")
ERROR_FAULTS = ("-1021", "-2019", "-1111", "-4164", "-2021")
FAULTS = (*HTTP_FAULTS, *ERROR_FAULTS, "db_drop")

READ_TIMEOUT = 0.5  # settings.ASTER_READ_TIMEOUT in the matrix
READ_TIMEOUT_WAIT = 0.8  # how late the simulator answers a read_timeout
RATE_LIMIT_SECONDS = 1.0  # the 429's Retry-After and the 418's ban


class HarnessError(Exception):
    """The cell could not be set up as described (not an end-state failure: never an expected one)."""


def no_sleep(seconds: float) -> None:
    return None


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    name: str
    aim: dict[str, Any]  # the request under fault: method and order filters (FaultRule fields)
    act: Callable[[ExecutionService], Any]
    setup: Callable[[ExecutionService], Any] | None = None
    entries: int = 1  # opening MARKET orders the scenario sends (entries and adds)
    account: dict[str, Any] = field(default_factory=dict)  # the live account's fields
    again: bool = False  # the fault meets reconciliation's repeat of the request too (armed again before it)
    faults: tuple[str, ...] = FAULTS  # the faults that apply


def _open(service: ExecutionService) -> Any:
    return service.execute_market_order(**ENTRY, idempotency_key="entry")


def _close(service: ExecutionService) -> Any:
    return service.close_position(SYMBOL, idempotency_key="close")


def _add(service: ExecutionService) -> Any:
    return service.execute_market_order(**ADD, idempotency_key="add")


TARGETS = {
    # the market entry, opened with TP and SL
    "entry": Target("entry", {"method": "POST", "order_type": "MARKET", "reduce_only": False}, _open),
    # the protective legs placed after the entry (TP first, then SL)
    "tp": Target("tp", {"method": "POST", "order_type": "TAKE_PROFIT_MARKET"}, _open),
    "sl": Target("sl", {"method": "POST", "order_type": "STOP_MARKET"}, _open),
    # the cancel of the stop leg when its position is closed
    "cancel": Target("cancel", {"method": "DELETE", "order_type": "STOP_MARKET"}, _close, setup=_open),
    # the cancel of the old stop when a second entry replaces the protection (new legs placed first)
    "replace": Target("replace", {"method": "DELETE", "order_type": "STOP_MARKET"}, _add, setup=_open, entries=2),
    # the reduce-only MARKET order of close_position
    "close": Target("close", {"method": "POST", "order_type": "MARKET", "reduce_only": True}, _close, setup=_open),
    # the TP / SL leg on an account that keeps unprotected positions (the service does not close the
    # position), and a fault that outlasts the service's handling: armed once more before the
    # reconciliation run, it meets reconciliation's re-placement of the leg (if there is one)
    "tp_kept": Target(
        "tp_kept",
        {"method": "POST", "order_type": "TAKE_PROFIT_MARKET"},
        _open,
        account={"keep_unprotected_positions": True},
        again=True,
        faults=(*HTTP_FAULTS, *ERROR_FAULTS),
    ),
    "sl_kept": Target(
        "sl_kept",
        {"method": "POST", "order_type": "STOP_MARKET"},
        _open,
        account={"keep_unprotected_positions": True},
        again=True,
        faults=(*HTTP_FAULTS, *ERROR_FAULTS),
    ),
}


# --------------------------------------------------------------------------- injecting a fault


def aim_at_simulator(sim: AsterSimulator, fault: str, target: Target) -> FaultRule:
    seconds = None
    if fault == "read_timeout":
        seconds = READ_TIMEOUT_WAIT
    elif fault in ("429", "418"):
        seconds = RATE_LIMIT_SECONDS
    return sim.faults.aim(fault, count=1, seconds=seconds, **target.aim)


@dataclass
class DatabaseDrop:
    """Every SQL statement fails from the moment the exchange accepted the target's request until
    the service call returns. Savepoint statements pass, so that the test's own transaction
    survives the service's rollbacks."""

    rule: FaultRule
    sim: AsterSimulator
    armed: bool = False
    fired: bool = False
    failed_statements: list[str] = field(default_factory=list)

    def arm_if_target(self, method: str, facts: OrderFacts) -> None:
        if not self.fired and self.rule.matches(method, "/fapi/v1/order", facts):
            self.armed = self.fired = True

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.armed and not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            self.failed_statements.append(sql.split(" ", 1)[0])
            raise OperationalError("server closed the connection unexpectedly (simulated)")
        return execute(sql, params, many, context)


@contextmanager
def database_drop(sim: AsterSimulator, target: Target, monkeypatch: Any) -> Iterator[DatabaseDrop]:
    drop = DatabaseDrop(FaultRule("503_after_accept", **target.aim), sim)  # a rule used only to match
    new_order, cancel_order = AsterClient.new_order, AsterClient.cancel_order

    def new_order_then_drop(client: AsterClient, **kwargs: Any) -> Any:
        result = new_order(client, **kwargs)
        facts = OrderFacts(
            type=kwargs.get("type"),
            reduce_only=bool(kwargs.get("reduce_only")),
            close_position=bool(kwargs.get("close_position")),
            client_order_id=kwargs.get("client_order_id"),
        )
        drop.arm_if_target("POST", facts)
        return result

    def cancel_order_then_drop(client: AsterClient, symbol: str, **kwargs: Any) -> Any:
        result = cancel_order(client, symbol, **kwargs)
        order = next(
            o
            for o in sim.exchange.accounts["demo-v1"].orders.values()
            if o.client_order_id == kwargs["client_order_id"]
        )
        drop.arm_if_target(
            "DELETE", OrderFacts(order.type, order.reduce_only, order.close_position, order.client_order_id)
        )
        return result

    monkeypatch.setattr(AsterClient, "new_order", new_order_then_drop)
    monkeypatch.setattr(AsterClient, "cancel_order", cancel_order_then_drop)
    try:
        with connection.execute_wrapper(drop):
            yield drop
    finally:
        drop.armed = False
        monkeypatch.setattr(AsterClient, "new_order", new_order)
        monkeypatch.setattr(AsterClient, "cancel_order", cancel_order)


def wait_out_rate_limits() -> None:
    """The client refuses to send until a 429's Retry-After or a 418's ban has passed: the next
    reconciliation beat comes after that (RECONCILE_SECONDS is 60)."""
    blocked_until = weight_budget()._blocked_until()
    delay = blocked_until - time.time()
    if delay > 0:
        time.sleep(delay + 0.05)


# --------------------------------------------------------------------------- the checker


def violation_kinds(violations: list[str]) -> set[str]:
    """ "unprotected: open LONG BTCUSDT ..." -> "unprotected"."""
    return {violation.split(":", 1)[0] for violation in violations}


def end_state_violations(account: Account, sim: AsterSimulator, *, entries: int) -> list[str]:
    """What is wrong with the account's end state, local and on the exchange (empty: nothing).
    Each violation reads "<kind>: <what>".

    1. one exchange order per intent: no client id twice, no order unknown here, no more opening
       orders than the scenario's entries, each booked intent with its one order, at most one
       resting order per (symbol, type);
    2. no lost fill: every executed exchange order is booked on Trades, to the quantity;
    3. the database matches the exchange: open positions (symbol, side, quantity), and resting
       protective orders = local legs pending/triggered with an exchange id (by client id);
    4. every open position has a stop resting on the exchange, or is flagged needs_protection on
       an account that keeps unprotected positions;
    5. the account is active, or reducing/halted with an audited reason.
    """
    account.refresh_from_db()
    remote = sim.exchange.accounts["demo-v1"]
    orders = list(remote.orders.values())
    trades = list(Trade.objects.filter(account=account))
    legs = list(PendingOrder.objects.filter(account=account))
    problems: list[str] = []

    # 1. exactly one exchange order per intent
    known_ids = {t.client_order_id for t in trades} | {leg.client_order_id for leg in legs}
    for client_id, count in Counter(o.client_order_id for o in orders).items():
        if count > 1:
            problems.append(f"duplicate: {count} exchange orders with client id {client_id}")
        if client_id not in known_ids:
            problems.append(
                f"unknown order: exchange order {client_id} is not known locally (resubmitted under a new id?)"
            )
    opening = [o for o in orders if o.type == "MARKET" and not o.reduce_only]
    if len(opening) > entries:
        problems.append(f"duplicate: {len(opening)} opening MARKET orders on the exchange for {entries} entries")
    by_client_id = {o.client_order_id: o for o in orders}
    sent_by_the_order_path = ("entry", "exit", "protection_failure")
    for trade in trades:
        if (
            trade.status == "filled"
            and trade.reason in sent_by_the_order_path
            and trade.client_order_id not in by_client_id
        ):
            problems.append(f"no order: filled intent {trade.client_order_id} has no exchange order")
    resting = [o for o in orders if o.is_open]
    for (symbol, type_), count in Counter((o.symbol, o.type) for o in resting).items():
        if count > 1:
            problems.append(f"duplicate: {count} resting {type_} orders for {symbol}")

    # 2. no lost fill
    booked: Counter[str] = Counter()
    for trade in trades:
        if trade.status == "filled" and trade.exchange_order_id:
            booked[trade.exchange_order_id] += trade.quantity
    for order in orders:
        if order.executed_qty > 0 and booked[str(order.order_id)] != order.executed_qty:
            problems.append(
                f"lost fill: {order.type} {order.client_order_id} executed {order.executed_qty}, "
                f"booked {booked[str(order.order_id)] or 0}"
            )
    for trade in trades:
        if trade.status in ("submitting", "unknown") and trade.client_order_id in by_client_id:
            problems.append(
                f"in flight: intent {trade.client_order_id} still {trade.status} though the exchange has its order"
            )

    # 3. the database matches the exchange
    local_positions = {p.symbol: (p.side, p.quantity) for p in Position.objects.filter(account=account, status="open")}
    remote_positions = {
        symbol: ("LONG" if p.amount > 0 else "SHORT", abs(p.amount))
        for symbol, p in remote.positions.items()
        if p.amount
    }
    if local_positions != remote_positions:
        problems.append(f"positions differ: local {_fmt(local_positions)}, exchange {_fmt(remote_positions)}")
    resting_protective = {o.client_order_id for o in resting if o.reduce_only or o.close_position}
    local_armed = {
        leg.client_order_id for leg in legs if leg.status in ("pending", "triggered") and leg.exchange_order_id
    }
    if resting_protective != local_armed:
        only_remote = sorted(resting_protective - local_armed)
        only_local = sorted(local_armed - resting_protective)
        detail = {
            leg.client_order_id: leg.status + ("" if leg.exchange_order_id else ", no exchange id") for leg in legs
        }
        remote_only = [f"{c} (local: {detail.get(c, 'none')})" for c in only_remote]
        problems.append(
            f"protective orders differ: resting on the exchange only {remote_only}, armed locally only {only_local}"
        )

    # 4. every open position protected (or flagged on an account that keeps it)
    resting_stops = {
        o.client_order_id for o in resting if o.type == "STOP_MARKET" and (o.reduce_only or o.close_position)
    }
    for position in Position.objects.filter(account=account, status="open"):
        armed_stop = any(
            leg.position_id == position.pk
            and leg.kind == "stop_loss"
            and leg.status in ("pending", "triggered")
            and leg.client_order_id in resting_stops
            for leg in legs
        )
        flagged = position.needs_protection and account.keep_unprotected_positions
        if not armed_stop and not flagged:
            problems.append(
                f"unprotected: open {position.side} {position.symbol} has no stop resting on the exchange "
                f"(needs_protection={position.needs_protection})"
            )
    for symbol in remote_positions:
        stops = [o for o in resting if o.symbol == symbol and o.type == "STOP_MARKET"]
        if not stops and symbol not in local_positions:
            problems.append(f"unprotected: {symbol} is open on the exchange with no stop")

    # 5. no account stuck without a reason
    if account.trading_state != "active":
        reason = (
            ExecutionEvent.objects.filter(
                account=account, kind="account.trading_state", to_status=account.trading_state
            )
            .exclude(message="")
            .first()
        )
        if reason is None:
            problems.append(f"held: account {account.trading_state} with no audited reason")
    return problems


def _fmt(positions: dict[str, tuple[str, Decimal]]) -> str:
    return ", ".join(f"{s} {side} {qty.normalize()}" for s, (side, qty) in sorted(positions.items())) or "flat"


def describe_state(account: Account, sim: AsterSimulator) -> str:
    """The account's trades, legs and exchange orders, one per line (for a failing cell's message)."""
    lines = []
    for t in Trade.objects.filter(account=account).order_by("id"):
        lines.append(
            f"trade {t.client_order_id} {t.reason} {t.side} {t.quantity.normalize()} {t.status} "
            f"exchange_id={t.exchange_order_id or '-'} {t.error_code}".rstrip()
        )
    for leg in PendingOrder.objects.filter(account=account).order_by("id"):
        lines.append(
            f"leg {leg.client_order_id} {leg.kind} {leg.status} exchange_id={leg.exchange_order_id or '-'}"
            + (" venue_cancel_pending" if leg.venue_cancel_pending else "")
        )
    for position in Position.objects.filter(account=account).order_by("id"):
        lines.append(
            f"position {position.symbol} {position.side} {position.quantity.normalize()} {position.status}"
            + (" needs_protection" if position.needs_protection else "")
        )
    for o in sim.exchange.accounts["demo-v1"].orders.values():
        flags = "closePosition" if o.close_position else "reduceOnly" if o.reduce_only else ""
        lines.append(f"exchange {o.client_order_id} {o.type} {o.side} {flags} {o.status} executed={o.executed_qty}")
    return "\n".join(lines)
