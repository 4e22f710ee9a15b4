"""A trading decision handed to the execution service, and what became of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.db import models
from django.db.models import Q

from accounts.models import HARD_MAX_LEVERAGE, Account
from execution.models import Trade, money_field


class DecisionAction(models.TextChoices):
    OPEN_LONG = "open_long", "Open long"
    OPEN_SHORT = "open_short", "Open short"
    CLOSE = "close", "Close"
    HOLD = "hold", "Hold"


OPEN_ACTIONS = frozenset({DecisionAction.OPEN_LONG, DecisionAction.OPEN_SHORT})
REQUIRED_TO_OPEN = ("quantity", "leverage")


def missing_open_fields(action: str, values: Mapping[str, Any]) -> dict[str, str]:
    """The fields an opening action needs that `values` lacks (None), each with its message.

    Empty when nothing is missing or the action opens nothing. The API's serializer and
    decisions.services both check with this.
    """
    if action not in OPEN_ACTIONS:
        return {}
    return {name: "Required to open a position." for name in REQUIRED_TO_OPEN if values.get(name) is None}


ORDER_FIELDS = (*REQUIRED_TO_OPEN, "take_profit", "stop_loss")


def unused_order_fields(action: str, values: Mapping[str, Any]) -> dict[str, str]:
    """The order fields given (not None) to an action that opens nothing (`close`, `hold`), each
    with its message: refused rather than silently dropped. Checked by the API's serializer and
    decisions.services."""
    if action in OPEN_ACTIONS:
        return {}
    return {
        name: f"Not used by {action}: leave it out (or null)." for name in ORDER_FIELDS if values.get(name) is not None
    }


class DecisionStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    EXECUTED = "executed", "Executed"
    REJECTED = "rejected", "Rejected by risk checks"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (hold)"
    UNKNOWN = "unknown", "Outcome unknown (settled with its order)"


class Decision(models.Model):
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        DecisionStatus.RECEIVED: frozenset(
            {
                DecisionStatus.EXECUTED,
                DecisionStatus.REJECTED,
                DecisionStatus.FAILED,
                DecisionStatus.SKIPPED,
                DecisionStatus.UNKNOWN,
            }
        ),
        # The venue's answer was ambiguous: the decision follows its order's final outcome.
        DecisionStatus.UNKNOWN: frozenset({DecisionStatus.EXECUTED, DecisionStatus.FAILED}),
        DecisionStatus.EXECUTED: frozenset(),
        DecisionStatus.REJECTED: frozenset(),
        DecisionStatus.FAILED: frozenset(),
        DecisionStatus.SKIPPED: frozenset(),
    }

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="decisions")
    symbol = models.CharField(max_length=32)
    action = models.CharField(max_length=16, choices=DecisionAction.choices)
    quantity = money_field(null=True, blank=True)
    leverage = models.PositiveSmallIntegerField(null=True, blank=True)
    take_profit = money_field(null=True, blank=True)
    stop_loss = money_field(null=True, blank=True)
    idempotency_key = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=DecisionStatus.choices, default=DecisionStatus.RECEIVED)
    reason = models.TextField(blank=True, default="", help_text="Denial code and message, or failure.")
    denial_code = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Why the decision was rejected: a risk code (RiskCheckFailed.code) or INVALID_INPUT.",
    )
    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, null=True, blank=True, related_name="decisions")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="decision_idempotency_key_unique_per_account",
            ),
            models.CheckConstraint(condition=Q(action__in=DecisionAction.values), name="decision_action_valid"),
            models.CheckConstraint(condition=Q(status__in=DecisionStatus.values), name="decision_status_valid"),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(quantity__gt=0), name="decision_quantity_positive"
            ),
            models.CheckConstraint(
                condition=Q(leverage__isnull=True) | (Q(leverage__gte=1) & Q(leverage__lte=HARD_MAX_LEVERAGE)),
                name="decision_leverage_1_to_25",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.symbol} [{self.status}]"
