"""Decisions in, executions out: the decision engine's door into the execution service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import record_event, transition
from accounts.models import Account
from decisions.models import (
    ORDER_FIELDS,
    REQUIRED_TO_OPEN,
    Decision,
    DecisionAction,
    DecisionStatus,
    missing_open_fields,
    unused_order_fields,
)
from execution.exceptions import (
    ExecutionError,
    IdempotencyMismatch,
    InvalidTransition,
    OrderOutcomeUnknown,
    ProtectionFailed,
    RiskCheckFailed,
)
from execution.log_context import bound
from execution.models import Trade, TradeStatus
from execution.services import ExecutionService
from execution.services.orders import client_order_id_for

logger = logging.getLogger(__name__)
INVALID_INPUT = "INVALID_INPUT"
# ExecutionError codes that deny a decision (409 with the code) rather than fail it (502).
DENIAL_CODES = frozenset({"NO_POSITION"})
PAYLOAD_FIELDS = ("symbol", "action", *ORDER_FIELDS)
# A stale `received` decision without any order is `failed` (NOT_SENT) only after this long: a
# request that slow has died before sending anything.
NOT_SENT_AFTER = timedelta(minutes=15)
OPEN_SIDES = {DecisionAction.OPEN_LONG: "BUY", DecisionAction.OPEN_SHORT: "SELL"}


@dataclass(frozen=True)
class Submission:
    """What `submit_decision` did: `created` is False when the idempotency key was seen before
    (then `decision` is that first decision, not executed again)."""

    decision: Decision
    created: bool


def _validate(action: str, payload: dict[str, Any]) -> None:
    if action not in DecisionAction.values:
        raise ValidationError({"action": f"Must be one of {', '.join(DecisionAction.values)}."})
    if unused := unused_order_fields(action, payload):
        raise ValidationError(unused)
    if missing := missing_open_fields(action, payload):
        raise ValidationError(missing)


def submit_decision(
    *,
    account: Account,
    symbol: str,
    action: str,
    quantity: Decimal | None = None,
    leverage: int | None = None,
    take_profit: Decimal | None = None,
    stop_loss: Decimal | None = None,
    idempotency_key: str = "",
) -> Submission:
    """Record a decision and execute it in the account's mode (paper or live).

    The decision ends `executed`, `rejected` (a risk denial, its code in `denial_code`),
    `failed` or `skipped` (hold). The same idempotency key returns the first decision with
    `created=False`, also when two submissions race; the same key with a different payload
    raises IdempotencyMismatch. Malformed input (an order field given to close or hold
    included) raises ValidationError. Neither writes anything.
    """
    payload = {
        "symbol": symbol,
        "action": action,
        "quantity": quantity,
        "leverage": leverage,
        "take_profit": take_profit,
        "stop_loss": stop_loss,
    }
    _validate(action, payload)
    if replay := _replay(account, idempotency_key, payload):
        return replay
    decision = Decision(
        account=account,
        symbol=symbol,
        action=action,
        quantity=quantity,
        leverage=leverage,
        take_profit=take_profit,
        stop_loss=stop_loss,
        idempotency_key=idempotency_key,
    )
    try:
        decision.full_clean(exclude=["trade"])
    except ValidationError:
        # A concurrent submission with the same key may have committed since the look-up
        # (full_clean checks the unique constraint): then that one is the answer.
        if replay := _replay(account, idempotency_key, payload):
            return replay
        raise
    try:
        with transaction.atomic():
            decision.save()
            record_event(
                account=account,
                kind="decision.received",
                subject=decision,
                to_status=decision.status,
                data={"action": action, "symbol": symbol},
            )
    except IntegrityError:
        # ... or between full_clean and the insert: the database's unique constraint decides.
        if replay := _replay(account, idempotency_key, payload):
            return replay
        raise
    executed = execute_decision(decision)
    schedule_mirror(executed)  # after the live decision's response: a Celery task; never fails it
    return Submission(executed, created=True)


def _replay(account: Account, idempotency_key: str, payload: dict[str, Any]) -> Submission | None:
    """The earlier decision under this key, if any, provided it was asked with the same payload
    (numbers compared by value: "0.01" is 0.0100000000)."""
    earlier = _earlier(account, idempotency_key)
    if earlier is None:
        return None
    if differing := [name for name in PAYLOAD_FIELDS if getattr(earlier, name) != payload[name]]:
        raise IdempotencyMismatch(
            f"Idempotency key {idempotency_key!r} was used for decision {earlier.pk} with a different "
            f"{', '.join(differing)}; use a new key for a new decision.",
            details={"decision": earlier.pk, "fields": differing},
        )
    return Submission(earlier, created=False)


def _earlier(account: Account, idempotency_key: str) -> Decision | None:
    if not idempotency_key:
        return None
    return Decision.objects.filter(account=account, idempotency_key=idempotency_key).first()


def execution_key(decision: Decision) -> str:
    """The idempotency key the decision's order is sent with (its client order id derives from it)."""
    return f"decision-{decision.pk}"


def execute_decision(decision: Decision) -> Decision:
    with bound(decision_id=decision.pk, account_id=decision.account_id):
        return _execute_decision(decision)


def _execute_decision(decision: Decision) -> Decision:
    service = ExecutionService(decision.account)
    key = execution_key(decision)
    try:
        if decision.action == DecisionAction.HOLD:
            return _finish(decision, DecisionStatus.SKIPPED, "hold")
        if decision.action == DecisionAction.CLOSE:
            result = service.close_position(decision.symbol, idempotency_key=key)
        else:
            quantity, leverage = decision.quantity, decision.leverage
            if quantity is None or leverage is None:  # submit_decision checks; a row saved otherwise may not be
                raise ValidationError(
                    missing_open_fields(decision.action, {name: getattr(decision, name) for name in REQUIRED_TO_OPEN})
                )
            result = service.execute_market_order(
                symbol=decision.symbol,
                side=OPEN_SIDES[DecisionAction(decision.action)],
                quantity=quantity,
                leverage=leverage,
                take_profit=decision.take_profit,
                stop_loss=decision.stop_loss,
                idempotency_key=key,
            )
    except RiskCheckFailed as denial:
        return _reject(decision, denial.code, denial.message)
    except ValidationError as exc:
        return _reject(decision, INVALID_INPUT, "; ".join(exc.messages))
    except OrderOutcomeUnknown as exc:
        # The venue may have executed it: the decision follows its order (settle_decisions).
        decision.trade = _order_of(decision)
        return _finish(decision, DecisionStatus.UNKNOWN, f"{exc.code}: {exc.message}", ["trade"])
    except ProtectionFailed as exc:
        # The entry did execute; its TP/SL could not be placed (the position was then closed at
        # market, or kept and flagged). Not a failure to retry: a new key would open it again.
        decision.trade = _order_of(decision)
        return _finish(decision, DecisionStatus.EXECUTED, f"{exc.code}: {exc.message}", ["trade"])
    except ExecutionError as exc:
        if exc.code in DENIAL_CODES:  # close with nothing open: a denial (CONTRACT), not a failure
            return _reject(decision, exc.code, exc.message)
        logger.warning("decision %s failed: %s", decision.pk, exc)
        return _finish(decision, DecisionStatus.FAILED, f"{exc.code}: {exc.message}")
    decision.trade = result.trade
    return _finish(decision, DecisionStatus.EXECUTED, "", ["trade"])


def _order_of(decision: Decision) -> Trade | None:
    """The order (intent) the decision was executed with, found by its client order id."""
    client_order_id = client_order_id_for(decision.account, execution_key(decision))
    return Trade.objects.filter(account=decision.account, client_order_id=client_order_id).first()


def settle_decisions(*, now: datetime | None = None) -> int:
    """Decisions whose outcome was left open follow their order's final outcome: `unknown` ones
    (the venue's answer was ambiguous), and `received` ones older than
    EXECUTION_INTENT_STALE_SECONDS (their process died). Reconciliation settles the orders; this
    settles the decisions. Returns how many changed."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.EXECUTION_INTENT_STALE_SECONDS)
    candidates = Decision.objects.filter(
        Q(status=DecisionStatus.UNKNOWN) | Q(status=DecisionStatus.RECEIVED, created_at__lt=stale)
    ).select_related("account", "trade")
    decisions = list(candidates)
    # Their orders in one read (by the client order ids the decisions were sent with).
    client_ids = {d.pk: client_order_id_for(d.account, execution_key(d)) for d in decisions if d.trade is None}
    orders = {t.client_order_id: t for t in Trade.objects.filter(client_order_id__in=client_ids.values())}
    settled = 0
    for decision in decisions:
        trade = decision.trade or orders.get(client_ids[decision.pk])
        try:
            settled += _settle(decision, trade)
        except InvalidTransition:  # its own process finished it meanwhile
            continue
    return settled


def _settle(decision: Decision, trade: Trade | None) -> int:
    if trade is None:
        if decision.status != DecisionStatus.RECEIVED or decision.action == DecisionAction.HOLD:
            return 0
        if decision.created_at > timezone.now() - NOT_SENT_AFTER:
            return 0  # no order yet: its request may still be on its way to sending one
        _finish(decision, DecisionStatus.FAILED, "NOT_SENT: its process stopped before any order was placed")
        return 1
    decision.trade = trade
    if trade.status == TradeStatus.FILLED:
        _finish(decision, DecisionStatus.EXECUTED, "", ["trade"])
        return 1
    if trade.status in (TradeStatus.REJECTED, TradeStatus.CANCELLED):
        _finish(
            decision, DecisionStatus.FAILED, f"{trade.error_code or trade.status}: {trade.error_message}", ["trade"]
        )
        return 1
    if decision.status == DecisionStatus.RECEIVED:  # its order is still in doubt: so is the decision
        _finish(decision, DecisionStatus.UNKNOWN, "its order's outcome is not known yet", ["trade"])
        return 1
    return 0


def _reject(decision: Decision, code: str, message: str) -> Decision:
    decision.denial_code = code
    return _finish(decision, DecisionStatus.REJECTED, f"{code}: {message}", ["denial_code"])


def _finish(decision: Decision, status: str, reason: str, fields: list[str] | None = None) -> Decision:
    """Move the decision to its outcome. If `settle_decisions` moved it meanwhile (a slow
    request), the outcome is applied from where it is now when the table allows (unknown ->
    executed), and otherwise the settled decision stands."""
    decision.reason = reason
    try:
        with transaction.atomic():
            transition(
                decision,
                to_status=status,
                account=decision.account,
                message=reason,
                update_fields=["reason", *(fields or [])],
            )
    except InvalidTransition:
        outcome = {name: getattr(decision, name) for name in ["reason", *(fields or [])]}
        decision.refresh_from_db()
        if status not in Decision.TRANSITIONS.get(decision.status, frozenset()):
            return decision
        for name, value in outcome.items():
            setattr(decision, name, value)
        with transaction.atomic():
            transition(
                decision,
                to_status=status,
                account=decision.account,
                message=reason,
                update_fields=list(outcome),
            )
    return decision


# ---------------------------------------------------------------------- shadow paper accounts

SHADOW_KEY_PREFIX = "shadow-"
DECISION_MISMATCH = "parity.decision_mismatch"
MIRROR_TASK = "decisions.mirror_to_shadow"  # decisions.tasks.mirror_decision_to_shadow


def schedule_mirror(decision: Decision) -> None:
    """The live decision does not wait for its paper shadow (a paper order reads the book over
    REST): once its transaction (if any) committed, a Celery task (decisions.tasks) mirrors it.
    A broker failure is logged: the live decision is already final."""
    account = decision.account
    if account.is_paper_trading or account.shadow_paper_account_id is None:
        return
    transaction.on_commit(partial(enqueue_mirror, decision.pk), robust=True)


def enqueue_mirror(decision_id: int) -> None:
    # By name: decisions.tasks imports this module (no import cycle within the app).
    try:
        current_app.send_task(MIRROR_TASK, args=[decision_id])
    except Exception:
        logger.exception("decision %s: its shadow paper decision could not be queued", decision_id)


def mirror_to_shadow(decision: Decision) -> Decision | None:
    """Submit a live account's decision again, with the same parameters, to its shadow paper
    account (Account.shadow_paper_account), so that the two equity curves can be compared. Runs
    after the live decision is final; a failure here is logged, never raised. When the two
    outcomes differ (one side refused or failed what the other executed), a
    `parity.decision_mismatch` event is recorded on the live account (the parity report lists it)."""
    account = decision.account
    if account.is_paper_trading or account.shadow_paper_account_id is None:
        return None
    try:
        shadow_account = Account.objects.get(pk=account.shadow_paper_account_id)
        # Validated when paired; re-checked now: either account may have changed since (an
        # admin reassigning the paper account's owner, ...): never another owner's account,
        # never a second live order, never the live account itself.
        if (refusal := _shadow_refusal(account, shadow_account)) is not None:
            logger.warning("account %s: shadow account %s not used: %s", account.pk, shadow_account.pk, refusal)
            return None
        shadow = submit_decision(
            account=shadow_account,
            symbol=decision.symbol,
            action=decision.action,
            quantity=decision.quantity,
            leverage=decision.leverage,
            take_profit=decision.take_profit,
            stop_loss=decision.stop_loss,
            idempotency_key=f"{SHADOW_KEY_PREFIX}{decision.pk}",
        ).decision
        if shadow.status != decision.status:
            _record_mismatch(decision, shadow)
        return shadow
    except Exception:
        logger.exception("decision %s: its shadow paper decision failed", decision.pk)
        return None


def _shadow_refusal(account: Account, shadow_account: Account) -> str | None:
    if shadow_account.pk == account.pk:
        return "it is the live account itself"
    if not shadow_account.is_paper_trading:
        return "it is not a paper account"
    if shadow_account.owner_id != account.owner_id:
        return "it belongs to another owner"
    return None


def _record_mismatch(decision: Decision, shadow: Decision) -> None:
    record_event(
        account=decision.account,
        kind=DECISION_MISMATCH,
        subject=decision,
        message=f"live {decision.status}, shadow paper {shadow.status}",
        data={
            "decision": decision.pk,
            "shadow_decision": shadow.pk,
            "shadow_account": shadow.account_id,
            "symbol": decision.symbol,
            "action": decision.action,
            "live_status": decision.status,
            "shadow_status": shadow.status,
            "live_reason": decision.reason,
            "shadow_reason": shadow.reason,
        },
    )
