"""Live reconciliation: the exchange is the truth, the database converges to it and says how.

One run per account holds a lease on the account row (claimed with a conditional UPDATE, so
two workers never reconcile one account at once) and reads positionRisk and openOrders once
each; only a difference costs more requests (order queries, userTrades, cancels, placements).
Repairs, in this order (earlier ones explain later differences):

1. `unknown` intents: resolved by client order id;
2. protective orders no longer open on the exchange: queried; a fill is booked (its sibling
   cancelled, on the exchange too), a cancel or expiry recorded;
3. positions: adopted (on the exchange only), closed (flat on the exchange: exit from
   userTrades), or corrected (quantity / entry drift);
4. orphan protective orders (resting for a symbol without a position): cancelled;
5. the protective-order invariant: an open position that asked for protection gets it again.

A difference that cannot be repaired puts the account in `reducing` (fail-closed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import batched_events, record_event, transition
from accounts.models import Account, TradingState
from accounts.services import set_trading_state
from execution.aster.errors import AsterError
from execution.aster.numbers import format_decimal
from execution.aster.replies import OrderResult, PositionRisk, UserTrade
from execution.exceptions import ExecutionError
from execution.models import (
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    PositionSource,
    PositionStatus,
    ReconciliationItem,
    ReconciliationRun,
    ReconciliationStatus,
    Trade,
    TradeReason,
    TradeStatus,
)
from execution.services.adapters.base import Fill
from execution.services.adapters.live import LiveExecutionAdapter, exchange_error
from execution.services.ledger import (
    book_fill,
    close_whole_position,
    lock_account,
    open_position,
    protective_fill_reason,
    reduce_only_trade,
    refresh_risk_fields,
)
from execution.services.orders import resolve_by_client_id
from execution.services.position_math import closing_side, q
from execution.services.protection import ProtectionSpec, place_on_exchange, replace_protection

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
ACTIVE_LEGS = (PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED)
ZERO = Decimal("0")


class AccountBusy(ExecutionError):
    code = "RECONCILIATION_RUNNING"


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

    positions: dict[str, PositionRisk]
    orders: list[OrderResult]

    def orders_for(self, symbol: str) -> list[OrderResult]:
        return [o for o in self.orders if o.symbol == symbol]

    @property
    def open_client_ids(self) -> set[str]:
        return {o.client_order_id for o in self.orders}


# --------------------------------------------------------------------------- leases


def claim_lease(account: Account, now: datetime) -> bool:
    """Conditional UPDATE: exactly one worker gets the account; a dead worker's lease expires."""
    claimed = (
        Account.objects.filter(pk=account.pk)
        .filter(Q(reconcile_lease_until__isnull=True) | Q(reconcile_lease_until__lt=now))
        .update(reconcile_lease_until=now + LEASE)
    )
    return claimed == 1


def release_lease(account: Account) -> None:
    Account.objects.filter(pk=account.pk).update(reconcile_lease_until=None)


# --------------------------------------------------------------------------- entry point


def reconcile_account(
    account: Account, *, dry_run: bool = False, adapter: LiveExecutionAdapter | None = None
) -> ReconciliationRun:
    """Compare one live account with the exchange and repair (unless dry_run) every difference."""
    if account.is_paper_trading:
        raise ExecutionError(
            f"account {account.pk} is a paper account: only live accounts are reconciled", code="NOT_LIVE"
        )
    now = timezone.now()
    run = ReconciliationRun.objects.create(account=account, dry_run=dry_run)
    if not dry_run and not claim_lease(account, now):
        return _finish(run, ReconciliationStatus.SKIPPED, [], "another reconciliation holds the account")
    try:
        adapter = adapter or LiveExecutionAdapter(account)
        before = adapter.client.requests_sent
        differences = Reconciler(account, adapter, run, dry_run=dry_run).run()
        run.http_calls = adapter.client.requests_sent - before
    except ExecutionError as exc:
        logger.error("reconciliation of account %s failed: %s", account.pk, exc)
        return _finish(run, ReconciliationStatus.FAILED, [], str(exc))
    finally:
        if not dry_run:
            release_lease(account)
    return _conclude(account, run, differences, dry_run=dry_run)


def _conclude(
    account: Account, run: ReconciliationRun, differences: list[Difference], *, dry_run: bool
) -> ReconciliationRun:
    failed = [d for d in differences if d.outcome == "failed"]
    if dry_run:
        status = ReconciliationStatus.DRY_RUN
    elif failed:
        status = ReconciliationStatus.FAILED
        _fail_closed(account, failed)
    else:
        status = ReconciliationStatus.REPAIRED if differences else ReconciliationStatus.IN_SYNC
    return _finish(run, status, differences, f"{len(differences)} difference(s), {len(failed)} not repaired")


def _finish(run: ReconciliationRun, status: str, differences: list[Difference], message: str) -> ReconciliationRun:
    ReconciliationItem.objects.bulk_create(
        ReconciliationItem(
            run=run,
            kind=d.kind,
            symbol=d.symbol,
            local=d.local,
            remote=d.remote,
            action=d.action,
            outcome=d.outcome,
            message=d.message,
        )
        for d in differences
    )
    run.status, run.differences, run.message, run.finished_at = status, len(differences), message, timezone.now()
    run.save(update_fields=["status", "differences", "message", "finished_at", "http_calls"])
    return run


def _fail_closed(account: Account, failed: list[Difference]) -> None:
    """An unrepaired difference: no new exposure until an operator looks (state `reducing`)."""
    summary = "; ".join(f"{d.kind} {d.symbol}: {d.message}" for d in failed)
    set_trading_state(
        account=account,
        state=TradingState.REDUCING,
        only_from=TradingState.ACTIVE,
        reason=f"reconciliation could not repair: {summary}",
    )
    logger.error("account %s set to reducing: reconciliation could not repair: %s", account.pk, summary)


# --------------------------------------------------------------------------- the run


class Reconciler:
    def __init__(self, account: Account, adapter: LiveExecutionAdapter, run: ReconciliationRun, *, dry_run: bool):
        self.account = account
        self.adapter = adapter
        self.client = adapter.client
        self.run_record = run
        self.dry_run = dry_run
        self.differences: list[Difference] = []
        self.cancelled_remote: set[str] = set()  # client ids this run cancelled on the exchange

    def _cancel_remote(self, symbol: str, client_order_id: str) -> None:
        if client_order_id not in self.cancelled_remote:
            self.adapter.cancel_order(symbol=symbol, client_order_id=client_order_id)
            self.cancelled_remote.add(client_order_id)

    def run(self) -> list[Difference]:
        snapshot = self._read_exchange()
        self._resolve_unknown_intents()
        self._check_gone_legs(snapshot)
        self._check_positions(snapshot)
        self._cancel_orphans(snapshot)
        self._enforce_protection(snapshot)
        return self.differences

    def _read_exchange(self) -> Snapshot:
        try:
            positions = {p.symbol: p for p in self.client.position_risk() if p.position_amt != 0}
            orders = self.client.open_orders()
        except AsterError as exc:
            raise exchange_error(exc, what="reading the exchange") from exc
        return Snapshot(positions, orders)

    def _repair(self, difference: Difference, action: str, repair: Any) -> None:
        """Record the difference; run its repair unless this is a dry run."""
        difference.action = action
        self.differences.append(difference)
        if self.dry_run:
            difference.outcome = "dry_run"
            return
        try:
            message = repair()
            difference.outcome, difference.message = "repaired", message or ""
        except (ExecutionError, AsterError) as exc:
            difference.outcome, difference.message = "failed", str(exc)
            logger.error(
                "reconciliation of account %s: %s %s failed: %s",
                self.account.pk,
                difference.kind,
                difference.symbol,
                exc,
            )

    # 1 ------------------------------------------------------------------ unknown intents

    def _resolve_unknown_intents(self) -> None:
        for trade in Trade.objects.filter(account=self.account, status=TradeStatus.UNKNOWN):
            difference = Difference("unknown_intent", trade.symbol, local=_trade_view(trade))
            self._repair(
                difference,
                f"query {trade.client_order_id} and apply the exchange's answer",
                lambda trade=trade: self._apply_unknown(trade),
            )

    def _apply_unknown(self, trade: Trade) -> str:
        outcome = resolve_by_client_id(self.adapter, trade, sleep=lambda _s: None)
        if isinstance(outcome, Fill):
            with transaction.atomic(), batched_events():
                account = lock_account(self.account.pk)
                book_fill(
                    account=account,
                    position=open_position(account, trade.symbol),
                    trade=trade,
                    quantity=outcome.quantity,
                    price=outcome.price,
                    fee=outcome.fee,
                    leverage=trade.leverage or 1,
                    now=timezone.now(),
                    exchange_order_id=outcome.exchange_order_id,
                )
            return f"filled {outcome.quantity} @ {outcome.price}"
        if outcome == "not_filled":
            with transaction.atomic():
                account = lock_account(self.account.pk)
                trade.refresh_from_db()
                transition(
                    trade,
                    to_status=TradeStatus.CANCELLED,
                    account=account,
                    message="the exchange reports it not filled",
                )
            return "not filled on the exchange: cancelled"
        raise ExecutionError(f"{trade.client_order_id} is still unknown to the exchange", code="STILL_UNKNOWN")

    # 2 ------------------------------------------------------------------ protective legs no longer open

    def _check_gone_legs(self, snapshot: Snapshot) -> None:
        open_ids = snapshot.open_client_ids
        legs = PendingOrder.objects.filter(account=self.account, status__in=ACTIVE_LEGS).exclude(exchange_order_id="")
        for leg in legs:
            if leg.client_order_id in open_ids:
                continue
            difference = Difference("protective_order_gone", leg.symbol, local=_leg_view(leg), remote={"open": False})
            self._repair(
                difference,
                f"query {leg.client_order_id} and apply its final state",
                lambda leg=leg: self._apply_gone_leg(leg),
            )

    def _apply_gone_leg(self, leg: PendingOrder) -> str:
        result = self.adapter.lookup_order(symbol=leg.symbol, client_order_id=leg.client_order_id)
        fill = self.adapter.fill_from(result) if result is not None else None
        if fill is None:
            status = result.status if result is not None else "NOT_FOUND"
            with transaction.atomic(), batched_events():
                account = lock_account(self.account.pk)
                leg.refresh_from_db()
                if leg.status in ACTIVE_LEGS:
                    leg.closed_at = timezone.now()
                    transition(
                        leg,
                        to_status=PendingOrderStatus.CANCELLED,
                        account=account,
                        message=f"exchange status {status}",
                        update_fields=["closed_at"],
                    )
            return f"{status}: marked cancelled"
        others = list(
            PendingOrder.objects.filter(position=leg.position, status__in=ACTIVE_LEGS)
            .exclude(pk=leg.pk)
            .exclude(exchange_order_id="")
        )
        self._book_leg_fill(leg, fill)
        for other in others:  # cancelled locally with the fill: cancel them where they rest too
            self._cancel_remote(other.symbol, other.client_order_id)
        return f"filled {fill.quantity} @ {fill.price}"

    def _book_leg_fill(self, leg: PendingOrder, fill: Fill) -> None:
        """Book the leg's fill (its position reduced or closed) and cancel its sibling."""
        now = timezone.now()
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            leg.refresh_from_db()
            position = open_position(account, leg.symbol)
            trade = reduce_only_trade(
                account=account,
                symbol=leg.symbol,
                side=leg.side,
                quantity=fill.quantity,
                leverage=position.leverage if position else None,
                client_order_id=f"{leg.client_order_id}-f",
                reason=protective_fill_reason(leg.kind),
            )
            if position is not None:
                book_fill(
                    account=account,
                    position=position,
                    trade=trade,
                    quantity=min(fill.quantity, position.quantity),
                    price=fill.price,
                    fee=fill.fee,
                    leverage=position.leverage,
                    now=now,
                    exchange_order_id=fill.exchange_order_id,
                    keep_pending=leg,
                )
            leg.trade, leg.closed_at = trade, now
            transition(
                leg,
                to_status=PendingOrderStatus.FILLED,
                account=account,
                update_fields=["trade", "closed_at"],
                data={"price": fill.price, "quantity": fill.quantity},
            )
            sibling = PendingOrder.objects.filter(pk=leg.sibling_id).first() if leg.sibling_id else None
            if sibling is not None and sibling.status in (*ACTIVE_LEGS, PendingOrderStatus.FAILED):
                sibling.closed_at = now
                transition(
                    sibling,
                    to_status=PendingOrderStatus.CANCELLED,
                    account=account,
                    message=f"its sibling {leg.kind} filled",
                    update_fields=["closed_at"],
                )

    # 3 ------------------------------------------------------------------ positions

    def _check_positions(self, snapshot: Snapshot) -> None:
        local = {p.symbol: p for p in Position.objects.filter(account=self.account, status=PositionStatus.OPEN)}
        for symbol, remote in snapshot.positions.items():
            position = local.get(symbol)
            if position is None:
                self._repair(
                    Difference("position_missing_locally", symbol, remote=_risk_view(remote)),
                    "adopt the exchange position and protect it",
                    lambda r=remote: self._adopt(r),
                )
            elif _side(remote) != position.side:
                self._repair(
                    Difference("position_side_differs", symbol, _position_view(position), _risk_view(remote)),
                    "close the local position, adopt the exchange's",
                    lambda p=position, r=remote: self._replace_flipped(p, r),
                )
            elif position.quantity != abs(remote.position_amt) or position.entry_price != remote.entry_price:
                self._repair(
                    Difference("position_drift", symbol, _position_view(position), _risk_view(remote)),
                    "set quantity and entry to the exchange's",
                    lambda p=position, r=remote: self._correct(p, r),
                )
        for symbol, position in local.items():
            if symbol not in snapshot.positions:
                self._repair(
                    Difference("position_missing_remotely", symbol, _position_view(position), {"positionAmt": "0"}),
                    "close locally with the exit from userTrades",
                    lambda p=position: self._close_from_trades(p, snapshot),
                )

    def _adopt(self, remote: PositionRisk) -> str:
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            position = Position(
                account=account,
                symbol=remote.symbol,
                side=_side(remote),
                quantity=abs(remote.position_amt),
                entry_price=remote.entry_price,
                leverage=remote.leverage or 1,
                mark_price=remote.mark_price,
                source=PositionSource.RECONCILIATION,
                needs_protection=True,
            )
            refresh_risk_fields(position)
            if remote.liquidation_price:
                position.liquidation_price = remote.liquidation_price
            position.save()
            record_event(
                account=account,
                kind="position.adopted",
                subject=position,
                to_status=PositionStatus.OPEN,
                data=_risk_view(remote),
            )
        return f"adopted position #{position.pk}"

    def _correct(self, position: Position, remote: PositionRisk) -> str:
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            position = Position.objects.select_for_update().get(pk=position.pk)
            before = _position_view(position)
            position.quantity, position.entry_price = abs(remote.position_amt), remote.entry_price
            position.leverage = remote.leverage or position.leverage
            refresh_risk_fields(position, mark_price=remote.mark_price)
            if remote.liquidation_price:
                position.liquidation_price = remote.liquidation_price
            position.save(
                update_fields=[
                    "quantity",
                    "entry_price",
                    "leverage",
                    "margin",
                    "liquidation_price",
                    "mark_price",
                    "unrealized_pnl",
                    "updated_at",
                ]
            )
            record_event(
                account=account,
                kind="position.corrected",
                subject=position,
                data={"before": before, "after": _position_view(position)},
            )
        return "corrected"

    def _replace_flipped(self, position: Position, remote: PositionRisk) -> str:
        self._close_locally(
            position,
            price=remote.entry_price,
            fee=ZERO,
            exchange_order_id="",
            note="the exchange holds the opposite side",
        )
        return self._adopt(remote)

    def _close_from_trades(self, position: Position, snapshot: Snapshot) -> str:
        """Flat on the exchange: the exit's price and fees come from the account's trades since opening."""
        ours = set(
            Trade.objects.filter(account=self.account, symbol=position.symbol)
            .exclude(exchange_order_id="")
            .values_list("exchange_order_id", flat=True)
        )
        start = int(position.opened_at.timestamp() * 1000)
        try:
            trades = self.client.user_trades(position.symbol, start_time_ms=start, limit=1000)
        except AsterError as exc:
            raise exchange_error(exc, what="userTrades") from exc
        exits = [t for t in trades if t.side == closing_side(position.side) and str(t.order_id) not in ours]
        price, fee, order_id = _exit_of(exits, position)
        if price is None:
            raise ExecutionError(
                f"{position.symbol} is flat on the exchange but no closing trade was found since "
                f"{position.opened_at:%Y-%m-%d %H:%M}",
                code="NO_EXIT_TRADE",
            )
        leftovers = self._close_locally(
            position, price=price, fee=fee, exchange_order_id=order_id, note="closed on the exchange"
        )
        for leg in leftovers:  # its protective orders may still rest on the exchange
            self._cancel_remote(leg.symbol, leg.client_order_id)
        return f"closed at {price:.8f} (fees {fee})"

    def _close_locally(
        self, position: Position, *, price: Decimal, fee: Decimal, exchange_order_id: str, note: str
    ) -> list[PendingOrder]:
        legs = list(
            PendingOrder.objects.filter(position=position, status__in=ACTIVE_LEGS).exclude(exchange_order_id="")
        )
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            position = Position.objects.select_for_update().get(pk=position.pk)
            close_whole_position(
                account=account,
                position=position,
                price=price,
                fee=fee,
                reason=TradeReason.RECONCILIATION,
                client_order_id=f"rc{self.run_record.pk}-{position.pk}",
                now=timezone.now(),
                exchange_order_id=exchange_order_id,
            )
            record_event(account=account, kind="position.reconciled_close", subject=position, message=note)
        return legs

    # 4 ------------------------------------------------------------------ orphans

    def _cancel_orphans(self, snapshot: Snapshot) -> None:
        for order in snapshot.orders:
            if order.symbol in snapshot.positions or not (order.close_position or order.reduce_only):
                continue
            if order.client_order_id in self.cancelled_remote:
                continue  # already cancelled with its position
            difference = Difference("orphan_protective_order", order.symbol, remote=_order_view(order))
            self._repair(
                difference,
                f"cancel {order.client_order_id} on the exchange",
                lambda order=order: self._cancel_orphan(order),
            )

    def _cancel_orphan(self, order: OrderResult) -> str:
        self._cancel_remote(order.symbol, order.client_order_id)
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            for leg in PendingOrder.objects.filter(
                account=account, client_order_id=order.client_order_id, status__in=ACTIVE_LEGS
            ):
                leg.closed_at = timezone.now()
                transition(
                    leg,
                    to_status=PendingOrderStatus.CANCELLED,
                    account=account,
                    message="orphan: no position on the exchange",
                    update_fields=["closed_at"],
                )
        return "cancelled"

    # 5 ------------------------------------------------------------------ the protective-order invariant

    def _enforce_protection(self, snapshot: Snapshot) -> None:
        resting = snapshot.open_client_ids
        positions = Position.objects.filter(account=self.account, status=PositionStatus.OPEN).filter(
            Q(needs_protection=True) | Q(take_profit__isnull=False) | Q(stop_loss__isnull=False)
        )
        legs_by_position: dict[int, list[PendingOrder]] = {}
        for leg in PendingOrder.objects.filter(account=self.account, status__in=ACTIVE_LEGS):
            legs_by_position.setdefault(leg.position_id or 0, []).append(leg)
        for position in positions:
            if position.symbol not in snapshot.positions:
                continue  # flat on the exchange: closed above (or, in a dry run, would be)
            live_legs = [leg for leg in legs_by_position.get(position.pk, []) if leg.client_order_id in resting]
            missing = _wanted_kinds(position) - {leg.kind for leg in live_legs}
            if not missing and not position.needs_protection:
                continue
            difference = Difference(
                "position_unprotected",
                position.symbol,
                local=_position_view(position),
                remote={"resting_legs": [leg.client_order_id for leg in live_legs], "missing": sorted(missing)},
            )
            self._repair(
                difference,
                "place its take-profit / stop-loss again",
                lambda p=position, legs=live_legs: self._protect(p, legs, snapshot),
            )

    def _protect(self, position: Position, live_legs: list[PendingOrder], snapshot: Snapshot) -> str:
        for leg in live_legs:  # replace, not duplicate
            self._cancel_remote(leg.symbol, leg.client_order_id)
        mark = snapshot.positions[position.symbol].mark_price or position.mark_price or position.entry_price
        spec = _protection_for(position, mark)
        with transaction.atomic(), batched_events():
            account = lock_account(self.account.pk)
            position = Position.objects.select_for_update().get(pk=position.pk)
            legs = replace_protection(
                account=account,
                position=position,
                spec=spec,
                base_client_id=f"p{position.pk}-r{self.run_record.pk}",
                now=timezone.now(),
            )
        place_on_exchange(adapter=self.adapter, account=self.account, orders=legs)
        return ", ".join(f"{leg.kind} at {leg.trigger_price}" for leg in legs)


# --------------------------------------------------------------------------- helpers


def _wanted_kinds(position: Position) -> set[str]:
    wanted = set()
    if position.take_profit is not None:
        wanted.add(PendingOrderKind.TAKE_PROFIT.value)
    if position.stop_loss is not None or position.needs_protection:
        wanted.add(PendingOrderKind.STOP_LOSS.value)
    return wanted


def _protection_for(position: Position, mark: Decimal) -> ProtectionSpec:
    """What the position asked for; an adopted one gets a stop EXECUTION_ADOPTED_STOP_PCT from the mark."""
    sign = 1 if position.side == "LONG" else -1
    stop, take = position.stop_loss, position.take_profit
    if stop is None and take is None:
        stop = mark * (1 - sign * settings.EXECUTION_ADOPTED_STOP_PCT)
    rules_tick = _tick(position.symbol)
    stop = (stop / rules_tick).quantize(Decimal("1")) * rules_tick if stop is not None else None
    return ProtectionSpec(take_profit=take, stop_loss=stop)


def _tick(symbol: str) -> Decimal:
    from execution.services.market_data import symbol_rules

    return symbol_rules(symbol).tick_size or Decimal("0.00000001")


def _exit_of(trades: list[UserTrade], position: Position) -> tuple[Decimal | None, Decimal, str]:
    quantity = sum((t.qty for t in trades), ZERO)
    if quantity <= 0:
        return None, ZERO, ""
    price = sum((t.qty * t.price for t in trades), ZERO) / quantity
    fee = sum((abs(t.commission) for t in trades), ZERO)
    return q(price), q(fee), str(trades[-1].order_id)


def _side(remote: PositionRisk) -> str:
    return "LONG" if remote.position_amt > 0 else "SHORT"


def _position_view(position: Position) -> dict[str, Any]:
    return {
        "id": position.pk,
        "side": position.side,
        "quantity": format_decimal(position.quantity),
        "entry_price": format_decimal(position.entry_price),
        "leverage": position.leverage,
    }


def _risk_view(remote: PositionRisk) -> dict[str, Any]:
    return {
        "positionAmt": format_decimal(remote.position_amt),
        "entryPrice": format_decimal(remote.entry_price),
        "leverage": remote.leverage,
        "markPrice": str(remote.mark_price),
    }


def _leg_view(leg: PendingOrder) -> dict[str, Any]:
    return {
        "id": leg.pk,
        "kind": leg.kind,
        "client_order_id": leg.client_order_id,
        "trigger_price": str(leg.trigger_price),
        "status": leg.status,
    }


def _order_view(order: OrderResult) -> dict[str, Any]:
    return {
        "clientOrderId": order.client_order_id,
        "type": order.type,
        "side": order.side,
        "stopPrice": str(order.stop_price),
        "closePosition": order.close_position,
        "reduceOnly": order.reduce_only,
    }


def _trade_view(trade: Trade) -> dict[str, Any]:
    return {
        "client_order_id": trade.client_order_id,
        "side": trade.side,
        "quantity": str(trade.quantity),
        "status": trade.status,
    }


def live_account_ids() -> list[int]:
    return list(Account.objects.filter(is_paper_trading=False).order_by("pk").values_list("pk", flat=True))


def reconcile_accounts(account_ids: list[int], *, dry_run: bool = False) -> dict[str, Any]:
    """Reconcile accounts one after the other; one account's failure does not stop the others."""
    runs: dict[str, Any] = {}
    for account in Account.objects.filter(pk__in=account_ids).order_by("pk"):
        try:
            run = reconcile_account(account, dry_run=dry_run)
            runs[str(account.pk)] = run.status
        except Exception as exc:  # an account must never take the others down with it
            logger.exception("reconciliation of account %s crashed", account.pk)
            runs[str(account.pk)] = f"error: {exc}"
    return runs
