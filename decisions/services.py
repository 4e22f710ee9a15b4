"""Decisions in, executions out: the decision engine's door into the execution service."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.audit import record_event, transition
from accounts.models import Account
from decisions.models import Decision, DecisionAction, DecisionStatus
from execution.exceptions import ExecutionError, RiskCheckFailed
from execution.services import ExecutionService

logger = logging.getLogger(__name__)
OPEN_SIDES = {DecisionAction.OPEN_LONG: "BUY", DecisionAction.OPEN_SHORT: "SELL"}


def _validate(action: str, quantity: Any, leverage: Any) -> None:
    if action not in DecisionAction.values:
        raise ValidationError({"action": f"Must be one of {', '.join(DecisionAction.values)}."})
    if action in OPEN_SIDES:
        errors = {}
        if quantity is None:
            errors["quantity"] = "Required to open a position."
        if leverage is None:
            errors["leverage"] = "Required to open a position."
        if errors:
            raise ValidationError(errors)


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
) -> Decision:
    """Record a decision and execute it in the account's mode (paper or live).

    Returns the decision, `executed`, `rejected` (a risk denial, its code in `reason`),
    `failed` or `skipped` (hold). The same idempotency key returns the first decision.
    Malformed input raises ValidationError and writes nothing.
    """
    _validate(action, quantity, leverage)
    if idempotency_key and (
        earlier := Decision.objects.filter(account=account, idempotency_key=idempotency_key).first()
    ):
        return earlier
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
    decision.full_clean(exclude=["trade"])
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
        earlier = Decision.objects.filter(account=account, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier
    return execute_decision(decision)


def execute_decision(decision: Decision) -> Decision:
    service = ExecutionService(decision.account)
    key = f"decision-{decision.pk}"
    try:
        if decision.action == DecisionAction.HOLD:
            return _finish(decision, DecisionStatus.SKIPPED, "hold")
        if decision.action == DecisionAction.CLOSE:
            result = service.close_position(decision.symbol, idempotency_key=key)
        else:
            result = service.execute_market_order(
                symbol=decision.symbol,
                side=OPEN_SIDES[DecisionAction(decision.action)],
                quantity=decision.quantity,
                leverage=decision.leverage,
                take_profit=decision.take_profit,
                stop_loss=decision.stop_loss,
                idempotency_key=key,
            )
    except RiskCheckFailed as denial:
        return _finish(decision, DecisionStatus.REJECTED, f"{denial.code}: {denial.message}")
    except ValidationError as exc:
        return _finish(decision, DecisionStatus.REJECTED, f"INVALID_INPUT: {'; '.join(exc.messages)}")
    except ExecutionError as exc:
        logger.warning("decision %s failed: %s", decision.pk, exc)
        return _finish(decision, DecisionStatus.FAILED, f"{exc.code}: {exc.message}")
    decision.trade = result.trade
    return _finish(decision, DecisionStatus.EXECUTED, "", ["trade"])


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


def denial_code(decision: Decision) -> str:
    """The risk code of a rejected decision (the part of `reason` before the colon)."""
    return decision.reason.split(":", 1)[0] if decision.status == DecisionStatus.REJECTED else ""
