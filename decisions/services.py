"""Decisions in, executions out: the decision engine's door into the execution service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.audit import record_event, transition
from accounts.models import Account
from decisions.models import REQUIRED_TO_OPEN, Decision, DecisionAction, DecisionStatus, missing_open_fields
from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.services import ExecutionService

logger = logging.getLogger(__name__)
INVALID_INPUT = "INVALID_INPUT"
OPEN_SIDES = {DecisionAction.OPEN_LONG: "BUY", DecisionAction.OPEN_SHORT: "SELL"}


@dataclass(frozen=True)
class Submission:
    """What `submit_decision` did: `created` is False when the idempotency key was seen before
    (then `decision` is that first decision, not executed again)."""

    decision: Decision
    created: bool


def _validate(action: str, quantity: Any, leverage: Any) -> None:
    if action not in DecisionAction.values:
        raise ValidationError({"action": f"Must be one of {', '.join(DecisionAction.values)}."})
    if missing := missing_open_fields(action, {"quantity": quantity, "leverage": leverage}):
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
    `created=False`, also when two submissions race. Malformed input raises ValidationError
    and writes nothing.
    """
    _validate(action, quantity, leverage)
    if earlier := _earlier(account, idempotency_key):
        return Submission(earlier, created=False)
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
        if earlier := _earlier(account, idempotency_key):
            return Submission(earlier, created=False)
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
        if earlier := _earlier(account, idempotency_key):
            return Submission(earlier, created=False)
        raise
    return Submission(execute_decision(decision), created=True)


def _earlier(account: Account, idempotency_key: str) -> Decision | None:
    if not idempotency_key:
        return None
    return Decision.objects.filter(account=account, idempotency_key=idempotency_key).first()


def execute_decision(decision: Decision) -> Decision:
    service = ExecutionService(decision.account)
    key = f"decision-{decision.pk}"
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
    except ExecutionError as exc:
        logger.warning("decision %s failed: %s", decision.pk, exc)
        return _finish(decision, DecisionStatus.FAILED, f"{exc.code}: {exc.message}")
    decision.trade = result.trade
    return _finish(decision, DecisionStatus.EXECUTED, "", ["trade"])


def _reject(decision: Decision, code: str, message: str) -> Decision:
    decision.denial_code = code
    return _finish(decision, DecisionStatus.REJECTED, f"{code}: {message}", ["denial_code"])


def _finish(decision: Decision, status: str, reason: str, fields: list[str] | None = None) -> Decision:
    with transaction.atomic():
        decision.reason = reason
        transition(
            decision,
            to_status=status,
            account=decision.account,
            message=reason,
            update_fields=["reason", *(fields or [])],
        )
    return decision
