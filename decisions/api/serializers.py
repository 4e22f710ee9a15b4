"""Decisions as the API takes and shows them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import HARD_MAX_LEVERAGE
from decisions.models import OPEN_ACTIONS, Decision, DecisionAction, missing_open_fields, unused_order_fields
from execution.api.fields import (
    DECIMAL_RULE,
    INTEGER_RULE,
    OwnedAccountField,
    StrictDecimalField,
    StrictIntegerField,
    StrictRegexField,
)
from execution.aster.rules import SYMBOL_PATTERN

NOT_FOR_CLOSE = "Must be absent or null for close and hold (refused, not ignored)."
STRICT_DECIMAL = (
    DECIMAL_RULE
    + ' Unicode digits ("\u0661\u0662"), underscores ("1_000"), exponents in strings and spaces are refused.'
)


class DecisionSerializer(serializers.ModelSerializer[Decision]):
    class Meta:
        model = Decision
        fields = [
            "id",
            "account",
            "symbol",
            "action",
            "quantity",
            "leverage",
            "take_profit",
            "stop_loss",
            "idempotency_key",
            "status",
            "reason",
            "denial_code",
            "trade",
            "created_at",
        ]
        read_only_fields = fields  # what a decision became; DecisionCreateSerializer is what a POST takes


class DecisionOutcomeSerializer(DecisionSerializer):
    """A decision that was recorded but not executed: rejected (409) or failed (502), with its `code`."""

    code = serializers.CharField(
        read_only=True,
        help_text="409: the denial code (`denial_code`: a risk code, NO_POSITION or INVALID_INPUT). "
        "502: EXECUTION_FAILED (`reason` says what failed at the venue).",
    )

    class Meta(DecisionSerializer.Meta):
        fields = [*DecisionSerializer.Meta.fields, "code"]
        read_only_fields = fields


class DecisionCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """What a decision needs; the view hands it to decisions.services.submit_decision."""

    account = OwnedAccountField(
        help_text="The id of one of your accounts: a JSON integer or a string of ASCII digits; 1.5, true and "
        "another owner's id are refused (the last like an id that does not exist)."
    )
    symbol = StrictRegexField(
        SYMBOL_PATTERN,
        error_messages={"invalid": "A symbol like BTCUSDT."},
        help_text="A JSON string like BTCUSDT (A-Z and 0-9, 2 to 32 characters); a number such as 123 is refused.",
    )
    action = serializers.ChoiceField(choices=DecisionAction.choices)
    quantity = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Base-asset quantity, > 0: required to open. " + NOT_FOR_CLOSE + " " + STRICT_DECIMAL,
    )
    leverage = StrictIntegerField(
        min_value=1,
        max_value=HARD_MAX_LEVERAGE,
        required=False,
        allow_null=True,
        help_text=f"1 to {HARD_MAX_LEVERAGE}: required to open. {NOT_FOR_CLOSE} {INTEGER_RULE} "
        '5.0, "5.0", "1_0" and Unicode digits are refused.',
    )
    take_profit = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Optional take-profit trigger price when opening. " + NOT_FOR_CLOSE + " " + STRICT_DECIMAL,
    )
    stop_loss = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Optional stop-loss trigger price when opening. " + NOT_FOR_CLOSE + " " + STRICT_DECIMAL,
    )
    idempotency_key = StrictRegexField(
        r"^[A-Za-z0-9._:-]{1,64}$",
        required=False,
        default="",
        help_text="Optional; 1 to 64 of A-Z a-z 0-9 . _ : -. The same key with the same payload (numbers "
        "compared by value) answers with the first decision; with a different payload 409 IDEMPOTENCY_MISMATCH.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if unused := unused_order_fields(attrs["action"], attrs):
            raise serializers.ValidationError(unused)
        if missing := missing_open_fields(attrs["action"], attrs):
            raise serializers.ValidationError(missing)
        if attrs["action"] in OPEN_ACTIONS and attrs["quantity"] <= 0:
            raise serializers.ValidationError({"quantity": "Must be greater than 0."})
        return attrs
