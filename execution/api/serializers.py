from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import HARD_MAX_LEVERAGE, Account
from decisions.models import OPEN_ACTIONS, Decision, DecisionAction, missing_open_fields
from execution.aster.rules import SYMBOL_PATTERN
from execution.models import PendingOrder, Position, Trade


class AccountSerializer(serializers.ModelSerializer):
    """Accounts as the API shows them: settings and state; credentials only as set / not set."""

    mode = serializers.CharField(read_only=True)
    paper_wallet = serializers.DecimalField(max_digits=28, decimal_places=10, read_only=True)
    credentials = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "mode",
            "is_paper_trading",
            "trading_state",
            "max_leverage",
            "cooldown_seconds",
            "paper_balance",
            "paper_realized_pnl",
            "paper_wallet",
            "margin_type",
            "api_version",
            "credentials",
            "created_at",
        ]
        read_only_fields = fields

    def get_credentials(self, account: Account) -> dict[str, str]:
        return {name: "set" if getattr(account, name) else "not set" for name in Account.SECRET_FIELDS}


class PositionSerializer(serializers.ModelSerializer):
    mode = serializers.CharField(source="account.mode", read_only=True)

    class Meta:
        model = Position
        fields = [
            "id",
            "account",
            "mode",
            "symbol",
            "side",
            "quantity",
            "entry_price",
            "leverage",
            "margin",
            "mark_price",
            "unrealized_pnl",
            "realized_pnl",
            "fees_paid",
            "funding_paid",
            "liquidation_price",
            "take_profit",
            "stop_loss",
            "needs_protection",
            "source",
            "status",
            "opened_at",
            "closed_at",
            "marked_at",
        ]
        read_only_fields = fields


class TradeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trade
        fields = [
            "id",
            "account",
            "position",
            "symbol",
            "side",
            "requested_quantity",
            "quantity",
            "price",
            "fee",
            "realized_pnl",
            "leverage",
            "reduce_only",
            "client_order_id",
            "exchange_order_id",
            "status",
            "reason",
            "error_code",
            "error_message",
            "created_at",
            "filled_at",
        ]
        read_only_fields = fields


class PendingOrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = PendingOrder
        fields = [
            "id",
            "account",
            "position",
            "symbol",
            "kind",
            "side",
            "trigger_price",
            "working_type",
            "quantity",
            "status",
            "client_order_id",
            "exchange_order_id",
            "sibling",
            "trade",
            "error_message",
            "created_at",
            "triggered_at",
            "closed_at",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
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
        read_only_fields = ["id", "status", "reason", "denial_code", "trade", "created_at"]


class DecisionCreateSerializer(serializers.Serializer):
    """What a decision needs; the view hands it to decisions.services.submit_decision."""

    account = serializers.PrimaryKeyRelatedField(queryset=Account.objects.none())
    symbol = serializers.RegexField(SYMBOL_PATTERN, error_messages={"invalid": "A symbol like BTCUSDT."})
    action = serializers.ChoiceField(choices=DecisionAction.choices)
    quantity = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True)
    leverage = serializers.IntegerField(min_value=1, max_value=HARD_MAX_LEVERAGE, required=False, allow_null=True)
    take_profit = serializers.DecimalField(
        max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True
    )
    stop_loss = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=0, required=False, allow_null=True)
    idempotency_key = serializers.RegexField(r"^[A-Za-z0-9._:-]{1,64}$", required=False, default="")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            field = self.fields["account"]
            assert isinstance(field, serializers.PrimaryKeyRelatedField)
            field.queryset = Account.objects.filter(owner=request.user)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if missing := missing_open_fields(attrs["action"], attrs):
            raise serializers.ValidationError(missing)
        if attrs["action"] in OPEN_ACTIONS and attrs["quantity"] <= 0:
            raise serializers.ValidationError({"quantity": "Must be greater than 0."})
        return attrs


class AccountStatusSerializer(serializers.Serializer):
    account = AccountSerializer()
    open_positions = PositionSerializer(many=True)
    pending_orders = serializers.IntegerField()
    unrealized_pnl = serializers.DecimalField(max_digits=28, decimal_places=10)
    margin_in_use = serializers.DecimalField(max_digits=28, decimal_places=10)
    unknown_intents = serializers.IntegerField()
    last_reconciliation = serializers.DictField(allow_null=True)
