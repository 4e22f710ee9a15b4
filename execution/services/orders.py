"""ExecutionService: the order path of ARCHITECTURE.md, the same for paper and live.

1. reserve  (one short transaction): lock the account, run the risk checks, write the intent
            (a Trade in `submitting` with its client order id) and an audit event;
2. execute  (no transaction, no lock): the adapter fills (paper) or sends (live) the order;
3. apply    (one short transaction): lock the account, book the fill, create TP/SL.

Never a network call inside a transaction; never a blind resubmission.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import batched_events, create_audited, record_event, transition
from accounts.models import Account
from accounts.row_sql import deferred_writes
from execution.exceptions import (
    ExchangeRejected,
    ExecutionError,
    InvalidTransition,
    NoPosition,
    OrderOutcomeUnknown,
    PolicyDenied,
    ProtectionFailed,
    RiskCheckFailed,
)
from execution.log_context import bound
from execution.metrics import order_outcome_metrics, stage_timer
from execution.models import (
    TRADE_IN_FLIGHT,
    PendingOrder,
    Position,
    PositionStatus,
    Trade,
    TradeReason,
    TradeStatus,
)
from execution.services.adapters.base import ExecutionAdapter, Fill, MarketOrder, PreparedFill, PreTradeData
from execution.services.adapters.factory import get_execution_adapter
from execution.services.ledger import lock_account
from execution.services.market_data import MarketSnapshot, market_snapshot
from execution.services.order_sql import ReserveState, lock_for_apply, lock_for_reserve
from execution.services.parity.market_orders import record_parked_shadow
from execution.services.position_math import closing_side, q
from execution.services.protection import (
    ProtectionSpec,
    book_and_protect,
    cancel_legs_left_resting,
    handle_protection_failure,
    place_on_exchange,
)
from execution.services.risk import (
    OrderRequest,
    PlannedOrder,
    check_protection,
    check_stop_before_liquidation,
    parse_order_request,
    plan_order,
    required_margin,
    run_policy_checks,
)
from execution.services.risk_context import risk_context
from execution.services.unknown_outcomes import UNKNOWN_QUERY_DELAYS, expired_error, resolve_by_client_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionResult:
    trade: Trade
    position: Position | None
    pending_orders: list[PendingOrder] = field(default_factory=list)
    replayed: bool = False  # True when an idempotency key returned an earlier result


@dataclass(frozen=True)
class Intent:
    trade: Trade
    plan: PlannedOrder
    snapshot: MarketSnapshot


def client_order_id_for(account: Account, idempotency_key: str | None) -> str:
    """Deterministic from the idempotency key when there is one; <= 32 characters, [A-Za-z0-9-]."""
    if idempotency_key:
        digest = hashlib.sha256(f"{account.pk}:{idempotency_key}".encode()).hexdigest()[:20]
        return f"k{account.pk}-{digest}"
    return f"x{account.pk}-{uuid.uuid4().hex[:20]}"


class ExecutionService:
    def __init__(
        self,
        account: Account,
        *,
        adapter: ExecutionAdapter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account = account
        self.adapter = adapter or get_execution_adapter(account)
        self._sleep = sleep

    # ------------------------------------------------------------------ public API

    def execute_market_order(
        self,
        *,
        symbol: str,
        side: str,
        quantity: Decimal | str,
        leverage: int,
        take_profit: Decimal | str | None = None,
        stop_loss: Decimal | str | None = None,
        idempotency_key: str | None = None,
        reason: str = TradeReason.ENTRY,
        reduce_only: bool = False,
    ) -> ExecutionResult:
        """Check, execute and book one market order (with optional TP/SL).

        Raises ValidationError for malformed arguments, RiskCheckFailed for denials,
        ExecutionError subclasses for execution failures. Delivering the same
        idempotency key again returns the first result.
        """
        with bound(account_id=self.account.pk), order_outcome_metrics(self.adapter.mode):
            return self._execute_market_order(
                symbol=symbol,
                side=side,
                quantity=quantity,
                leverage=leverage,
                take_profit=take_profit,
                stop_loss=stop_loss,
                idempotency_key=idempotency_key,
                reason=reason,
                reduce_only=reduce_only,
            )

    def _execute_market_order(
        self,
        *,
        symbol: str,
        side: str,
        quantity: Decimal | str,
        leverage: int,
        take_profit: Decimal | str | None,
        stop_loss: Decimal | str | None,
        idempotency_key: str | None,
        reason: str,
        reduce_only: bool,
    ) -> ExecutionResult:
        request = parse_order_request(
            symbol=symbol,
            side=side,
            quantity=quantity,
            leverage=leverage,
            take_profit=take_profit,
            stop_loss=stop_loss,
            reduce_only=reduce_only,
        )
        client_order_id = client_order_id_for(self.account, idempotency_key)
        with bound(client_order_id=client_order_id):
            return self._place(request, client_order_id, idempotency_key=idempotency_key, reason=reason)

    def _place(
        self, request: OrderRequest, client_order_id: str, *, idempotency_key: str | None, reason: str
    ) -> ExecutionResult:
        if idempotency_key and (earlier := self._replay(client_order_id)) is not None:
            return earlier
        with stage_timer("reserve"):
            snapshot = market_snapshot(request.symbol)  # network: before any transaction
            pre_trade = self.adapter.pre_trade_data(request.symbol)
            prepared = self.adapter.prepare_fill(symbol=request.symbol, side=request.side, quantity=request.quantity)
        if prepared is not None:  # no venue (paper): reserve, fill and book in one transaction
            done = self._reserve_or_replay(request, snapshot, pre_trade, client_order_id, reason, prepared)
            assert isinstance(done, tuple | ExecutionResult)
            if isinstance(done, ExecutionResult):
                return done
            result, legs_made_final = done
        else:
            placed = self._place_at_venue(request, snapshot, pre_trade, client_order_id, reason)
            if isinstance(placed, ExecutionResult):
                return placed
            result, legs_made_final = placed
        self._filled_or_raise(result)  # a paper reduce-only fill that found nothing left: cancelled
        try:
            if result.pending_orders:
                with stage_timer("protect"):
                    result = self._protect(result)
        finally:
            # A close, a flip or new protection made legs final here: cancel them at the venue
            # too, after the new legs are placed (a position is never left without its stop).
            if legs_made_final and self.adapter.has_venue:
                cancel_legs_left_resting(adapter=self.adapter, account=self.account)
        record_parked_shadow(account_id=self.account.pk, client_order_id=client_order_id)  # parity, after protection
        return result

    def _place_at_venue(
        self,
        request: OrderRequest,
        snapshot: MarketSnapshot,
        pre_trade: PreTradeData,
        client_order_id: str,
        reason: str,
    ) -> ExecutionResult | tuple[ExecutionResult, bool]:
        """Reserve (committed: the intent exists before anything is sent), send, book."""
        with stage_timer("reserve"):
            intent = self._reserve_or_replay(request, snapshot, pre_trade, client_order_id, reason, None)
        if isinstance(intent, ExecutionResult):
            return intent
        assert isinstance(intent, Intent)
        with stage_timer("exchange"):
            try:
                fill = self._execute(intent)
            except OrderOutcomeUnknown:
                fill = self._resolve_unknown(intent)  # never a resubmission: a query by client id
        try:
            with stage_timer("apply"):
                return self._apply(intent, fill)
        except InvalidTransition:
            # Reconciliation resolved this intent while the order path was still asking the venue
            # (its transaction rolled back whole): report what was booked, book nothing twice.
            logger.warning("intent %s was resolved elsewhere meanwhile", intent.trade.client_order_id)
            replay = self._replay(intent.trade.client_order_id)
            assert replay is not None
            return self._filled_or_raise(replay)

    @staticmethod
    def _filled_or_raise(result: ExecutionResult) -> ExecutionResult:
        """A result whose trade did not fill is not a success (resolved elsewhere as rejected or
        cancelled, or a reduce-only fill that found nothing left to reduce)."""
        trade = result.trade
        if trade.status != TradeStatus.FILLED:
            raise ExchangeRejected(
                f"{trade.client_order_id} did not fill ({trade.status}): {trade.error_message}",
                code=trade.error_code or "NOT_FILLED",
            )
        return result

    def close_position(
        self, symbol: str, *, idempotency_key: str | None = None, reason: str = TradeReason.EXIT
    ) -> ExecutionResult:
        """Close the whole open position in `symbol` at market (reduce-only)."""
        position = Position.objects.filter(account=self.account, symbol=symbol, status=PositionStatus.OPEN).first()
        if position is None:
            raise NoPosition(f"no open position in {symbol} for account {self.account.pk}")
        return self.execute_market_order(
            symbol=symbol,
            side=closing_side(position.side),
            quantity=position.quantity,
            leverage=position.leverage,
            idempotency_key=idempotency_key,
            reason=reason,
            reduce_only=True,
        )

    # ------------------------------------------------------------------ 1. reserve

    def _reserve_or_replay(
        self,
        request: OrderRequest,
        snapshot: MarketSnapshot,
        pre_trade: PreTradeData,
        client_order_id: str,
        reason: str,
        prepared: PreparedFill | None,
    ) -> Intent | tuple[ExecutionResult, bool] | ExecutionResult:
        try:
            if prepared is not None:
                return self._place_locally(request, snapshot, pre_trade, client_order_id, reason, prepared)
            return self._reserve(request, snapshot, pre_trade, client_order_id, reason)
        except IntegrityError:
            # Two deliveries of one idempotency key raced; the other one wrote the intent.
            replay = self._replay(client_order_id)
            if replay is None:
                raise
            return replay
        except PolicyDenied as denial:  # input refusals (plain RiskCheckFailed) write nothing
            self._record_denial(request, denial)
            raise

    def _reserve(
        self,
        request: OrderRequest,
        snapshot: MarketSnapshot,
        pre_trade: PreTradeData,
        client_order_id: str,
        reason: str,
    ) -> Intent:
        with transaction.atomic():
            # One round trip: the account locked, its open positions, the margin its unbooked
            # intents hold and its last entry (order_sql.lock_for_reserve); one more to write.
            state = lock_for_reserve(self.account.pk, balance_as_of=pre_trade.balance_as_of)
            return self._reserve_locked(state, request, snapshot, pre_trade, client_order_id, reason)

    def _reserve_locked(
        self,
        state: ReserveState,
        request: OrderRequest,
        snapshot: MarketSnapshot,
        pre_trade: PreTradeData,
        client_order_id: str,
        reason: str,
    ) -> Intent:
        """Plan and check the order against `state` (read under the account lock) and write the
        intent with its `trade.submitting` event (one round trip on PostgreSQL, or queued)."""
        account = self.account = state.account
        position = next((p for p in state.positions if p.symbol == request.symbol), None)
        plan = plan_order(request, snapshot.rules, position)
        check_protection(plan, snapshot.mark_price)
        context = risk_context(state=state, plan=plan, snapshot=snapshot, pre_trade=pre_trade, position=position)
        context = replace(context, safety_close=reason == TradeReason.PROTECTION_FAILURE)
        check_stop_before_liquidation(context)  # an input refusal: writes nothing
        run_policy_checks(context)
        trade = Trade(
            account=account,
            symbol=request.symbol,
            side=request.side,
            requested_quantity=plan.quantity,
            quantity=plan.quantity,
            leverage=request.leverage,
            reduce_only=plan.only_reduces,
            reserved_margin=q(required_margin(context)),  # held until the intent leaves flight
            take_profit=plan.take_profit,  # whoever resolves the intent protects its position
            stop_loss=plan.stop_loss,
            client_order_id=client_order_id,
            reason=reason,
        )
        create_audited(
            trade,
            account=account,
            data={"side": trade.side, "quantity": trade.quantity, "mark_price": snapshot.mark_price},
        )
        return Intent(trade, plan, snapshot)

    def _place_locally(
        self,
        request: OrderRequest,
        snapshot: MarketSnapshot,
        pre_trade: PreTradeData,
        client_order_id: str,
        reason: str,
        prepared: PreparedFill,
    ) -> tuple[ExecutionResult, bool]:
        """No venue (paper), and the fill's data read already: reserve, fill and book in ONE
        transaction, audited step by step as on a venue (`trade.submitting`, then `filled` or
        `rejected`). On PostgreSQL: one round trip to lock and read (taking ahead the keys of the
        rows it may insert), one for every write (deferred_writes), then the COMMIT. The account
        lock is held for no network call."""
        legs = (request.take_profit is not None) + (request.stop_loss is not None)
        failure: ExecutionError | None = None
        applying = ExitStack()  # the apply stage's time runs to the COMMIT
        try:
            with transaction.atomic():
                state = lock_for_reserve(
                    self.account.pk,
                    balance_as_of=pre_trade.balance_as_of,
                    keys_for=(not request.reduce_only, legs),
                    books_in=request.symbol,  # the position it books on is locked: a new mark survives
                )
                with deferred_writes(state.keys):
                    intent = self._reserve_locked(state, request, snapshot, pre_trade, client_order_id, reason)
                    try:
                        with stage_timer("exchange"):
                            fill = prepared.fill(self._market_order(intent))
                    except ExecutionError as exc:
                        failure = exc
                        self._record_outcome(intent.trade, TradeStatus.REJECTED, exc)
                    else:
                        applying.enter_context(stage_timer("apply"))
                        position = next((p for p in state.positions if p.symbol == request.symbol), None)
                        booked = self._book(state.account, intent, fill, position)
        finally:
            applying.close()
        if failure is not None:
            raise failure
        return booked

    def _record_denial(self, request: OrderRequest, denial: RiskCheckFailed) -> None:
        logger.info("order denied for account %s: %s", self.account.pk, denial)
        record_event(
            account=self.account,
            kind="order.denied",
            message=denial.message,
            data={
                "code": denial.code,
                "symbol": request.symbol,
                "side": request.side,
                "quantity": request.quantity,
                "leverage": request.leverage,
                **denial.details,
            },
        )

    def _replay(self, client_order_id: str) -> ExecutionResult | None:
        trade = Trade.objects.filter(client_order_id=client_order_id, account=self.account).first()
        if trade is None:
            return None
        pending = list(PendingOrder.objects.filter(position=trade.position)) if trade.position_id else []
        return ExecutionResult(trade=trade, position=trade.position, pending_orders=pending, replayed=True)

    # ------------------------------------------------------------------ 2. execute

    @staticmethod
    def _market_order(intent: Intent) -> MarketOrder:
        trade, plan = intent.trade, intent.plan
        return MarketOrder(
            symbol=trade.symbol,
            side=trade.side,
            quantity=plan.quantity,
            client_order_id=trade.client_order_id,
            leverage=plan.request.leverage,
            reduce_only=plan.only_reduces,
        )

    def _execute(self, intent: Intent) -> Fill:
        trade = intent.trade
        try:
            return self.adapter.execute_market_order(self._market_order(intent))
        except OrderOutcomeUnknown as exc:
            self._mark(trade, TradeStatus.UNKNOWN, exc)
            raise
        except ExecutionError as exc:
            self._mark(trade, TradeStatus.REJECTED, exc)
            raise

    def _mark(self, trade: Trade, status: str, error: ExecutionError) -> None:
        with transaction.atomic():
            lock_account(trade.account_id)
            trade.refresh_from_db(fields=["status"])
            if trade.status not in TRADE_IN_FLIGHT:
                return  # reconciliation resolved it meanwhile: its outcome stands
            self._record_outcome(trade, status, error)

    def _record_outcome(self, trade: Trade, status: str, error: ExecutionError) -> None:
        """The intent leaves flight without a fill (the caller holds the account lock)."""
        trade.error_code, trade.error_message = error.code, error.message
        transition(
            trade,
            to_status=status,
            account=self.account,
            message=error.message,
            update_fields=["error_code", "error_message"],
            data={"code": error.code},
        )

    def _resolve_unknown(self, intent: Intent) -> Fill:
        """Ask the exchange what became of an ambiguous submission, by its client order id,
        a bounded number of times with backoff. Never resend it."""
        trade = intent.trade
        outcome = resolve_by_client_id(self.adapter, trade, sleep=self._sleep)
        if isinstance(outcome, Fill):
            return outcome
        if outcome == "not_filled":
            self._mark(
                trade,
                TradeStatus.CANCELLED,
                ExchangeRejected("the exchange reports it unfilled", code="EXCHANGE_NOT_FILLED"),
            )
            raise ExchangeRejected(f"{trade.client_order_id}: the exchange did not fill it", code="EXCHANGE_NOT_FILLED")
        if outcome == "expired":
            expired = expired_error(trade)
            self._mark(trade, TradeStatus.REJECTED, expired)
            raise expired
        raise OrderOutcomeUnknown(
            f"{trade.client_order_id} is still unknown after {len(UNKNOWN_QUERY_DELAYS)} queries; "
            "reconciliation will resolve it (it is never resent)",
            details={"client_order_id": trade.client_order_id},
        )

    # ------------------------------------------------------------------ 3. apply

    def _apply(self, intent: Intent, fill: Fill) -> tuple[ExecutionResult, bool]:
        """Book the fill and record the TP/SL legs. Also says whether existing legs were made
        final (a close, a flip, protection replaced), which may still rest at the venue."""
        plan = intent.plan
        opens = None if plan.only_reduces else ("LONG" if intent.trade.side == "BUY" else "SHORT")
        legs = (plan.take_profit is not None) + (plan.stop_loss is not None)
        with transaction.atomic():
            # One round trip to lock and read (taking ahead the keys of the rows it may insert),
            # one to send the writes (deferred_writes, PostgreSQL), then the COMMIT.
            state = lock_for_apply(self.account.pk, intent.trade.symbol, opens_side=opens, legs=legs)
            with deferred_writes(state.keys):
                return self._book(state.account, intent, fill, state.position)

    def _book(
        self, account: Account, intent: Intent, fill: Fill, position: Position | None
    ) -> tuple[ExecutionResult, bool]:
        """Book `fill` on `position` (read under the account lock, which the caller holds) with
        the TP/SL legs the intent asked for. Also says whether existing legs were made final (a
        close, a flip, protection replaced), which may still rest at the venue."""
        plan = intent.plan
        spec = ProtectionSpec(plan.take_profit, plan.stop_loss)
        with batched_events():
            booked, pending = book_and_protect(
                account=account,
                position=position,
                trade=intent.trade,
                fill=fill,
                leverage=plan.request.leverage,
                spec=spec,
                now=timezone.now(),
            )
        self.account = account
        for held in (booked.position, booked.closed_position):  # its count of legs was for this transaction
            if held is not None:
                held.__dict__.pop("active_legs_under_lock", None)
        result = ExecutionResult(
            trade=booked.trade, position=booked.position or booked.closed_position, pending_orders=pending
        )
        return result, booked.closed_position is not None or (spec.wanted and not booked.opened_new)

    # ------------------------------------------------------------------ 4. protection at the venue

    def _protect(self, result: ExecutionResult) -> ExecutionResult:
        """Hand the recorded TP/SL legs to the venue (after the fill's transaction). Paper has
        no venue: its adapter accepts them as they are, and the rows are the orders."""
        try:
            place_on_exchange(adapter=self.adapter, account=self.account, orders=result.pending_orders)
        except ProtectionFailed as failure:
            self._protection_failed(result, failure)
            raise
        return result

    def _protection_failed(self, result: ExecutionResult, failure: ProtectionFailed) -> None:
        def close(symbol: str) -> str:
            return self.close_position(symbol, reason=TradeReason.PROTECTION_FAILURE).trade.client_order_id

        handle_protection_failure(
            adapter=self.adapter,
            account=self.account,
            legs=result.pending_orders,
            position=result.position,
            symbol=result.trade.symbol,
            failure=failure,
            close=close,
        )
