"""Decisions as the API takes and shows them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import HARD_MAX_LEVERAGE
from decisions.models import OPEN_ACTIONS, Decision, DecisionAction, missing_open_fields
from execution.api.fields import OwnedAccountField
from execution.aster.rules import SYMBOL_PATTERN


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


class DecisionCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """What a decision needs; the view hands it to decisions.services.submit_decision."""

    account = OwnedAccountField()
    symbol = serializers.RegexField(SYMBOL_PATTERN, error_messages={"invalid": "A symbol like BTCUSDT."})
    action = serializers.ChoiceField(choices=DecisionAction.choices)
    quantity = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True)
    leverage = serializers.IntegerField(min_value=1, max_value=HARD_MAX_LEVERAGE, required=False, allow_null=True)
    take_profit = serializers.DecimalField(
        max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True
    )
    stop_loss = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True)
    idempotency_key = serializers.RegexField(r"^[A-Za-z0-9._:-]{1,64}$", required=False, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if missing := missing_open_fields(attrs["action"], attrs):
            raise serializers.ValidationError(missing)
        if attrs["action"] in OPEN_ACTIONS and attrs["quantity"] <= 0:
            raise serializers.ValidationError({"quantity": "Must be greater than 0."})
        return attrs
