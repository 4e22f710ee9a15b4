"""What the controls and account lifecycle endpoints take and answer."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import HARD_MAX_LEVERAGE, ApiVersion, MarginType
from execution.api.fields import StrictDecimalField, StrictIntegerField, StrictRegexField
from execution.api.serializers import PendingOrderSerializer, PositionSerializer, TradeSerializer
from execution.models import WorkingType


class CloseSerializer(serializers.Serializer[dict[str, Any]]):
    quantity = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        required=False,
        allow_null=True,
        help_text="Base-asset quantity to close, > 0; absent or null: the whole position. More than the "
        "position holds: 409 INVALID_QUANTITY.",
    )

    def validate_quantity(self, value: Any) -> Any:
        if value is not None and value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value


class CloseResultSerializer(serializers.Serializer[dict[str, Any]]):
    trade = TradeSerializer(help_text="The closing trade.")
    position = PositionSerializer(allow_null=True, help_text="The position after the close.")


class ProtectionSerializer(serializers.Serializer[dict[str, Any]]):
    take_profit = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        required=False,
        allow_null=True,
        help_text="New take-profit trigger price; null removes the leg; absent keeps it as it is.",
    )
    stop_loss = StrictDecimalField(
        max_digits=28,
        decimal_places=10,
        required=False,
        allow_null=True,
        help_text="New stop-loss trigger price; null removes the leg; absent keeps it as it is. It must lie "
        "on the losing side of the mark and before the liquidation price (409 INVALID_PROTECTION).",
    )
    working_type = serializers.ChoiceField(
        choices=WorkingType.choices, required=False, help_text="Trigger on the mark (default) or the last price."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("take_profit", "stop_loss"):
            if attrs.get(name) is not None and attrs[name] <= 0:
                raise serializers.ValidationError({name: "Must be greater than 0."})
        if not attrs:
            raise serializers.ValidationError("Send take_profit, stop_loss or working_type.")
        return attrs


class ProtectionResultSerializer(serializers.Serializer[dict[str, Any]]):
    position = PositionSerializer()
    pending_orders = PendingOrderSerializer(many=True, help_text="The position's active legs after the amend.")


class ReasonSerializer(serializers.Serializer[dict[str, Any]]):
    reason = StrictRegexField(
        r"^[^\x00-\x1f]{0,200}$", required=False, default="", help_text="Why (kept in the audit trail)."
    )


class HaltResultSerializer(serializers.Serializer[dict[str, Any]]):
    trading_state = serializers.CharField()
    cancelled = serializers.ListField(child=serializers.CharField(), help_text="Entry orders cancelled (live).")
    kept = serializers.ListField(child=serializers.CharField(), help_text="Protective orders kept (live).")
    failures = serializers.ListField(child=serializers.CharField(), help_text="Orders that could not be cancelled.")


class CloseAllResultSerializer(serializers.Serializer[dict[str, Any]]):
    closed = serializers.DictField(child=serializers.IntegerField(), help_text="Symbol -> closing trade id.")
    failures = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()), help_text="Symbol -> {code, detail}."
    )


class AccountCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """A new paper account."""

    name = StrictRegexField(r"^[^\x00-\x1f]{1,100}$", help_text="1 to 100 characters.")
    paper_balance = StrictDecimalField(
        max_digits=24, decimal_places=8, min_value=0, required=False, help_text="Starting balance (USDT)."
    )
    max_leverage = StrictIntegerField(min_value=1, max_value=HARD_MAX_LEVERAGE, required=False)
    cooldown_seconds = StrictIntegerField(min_value=0, max_value=2_147_483_647, required=False)
    margin_type = serializers.ChoiceField(choices=MarginType.choices, required=False)


class ResetSerializer(serializers.Serializer[dict[str, Any]]):
    paper_balance = StrictDecimalField(
        max_digits=24,
        decimal_places=8,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="The new deposit (USDT); absent: the current deposit.",
    )


class CredentialsSerializer(serializers.Serializer[dict[str, Any]]):
    """Write-only: the answer says only whether each secret is set."""

    api_version = serializers.ChoiceField(choices=ApiVersion.choices)
    api_key = StrictRegexField(r"^[\x21-\x7e]{1,256}$", required=False, write_only=True)
    api_secret = StrictRegexField(r"^[\x21-\x7e]{1,256}$", required=False, write_only=True)
    wallet_address = StrictRegexField(r"^[\x21-\x7e]{1,64}$", required=False, write_only=True)
    signer_address = StrictRegexField(r"^[\x21-\x7e]{1,64}$", required=False, write_only=True)
    signer_private_key = StrictRegexField(r"^[\x21-\x7e]{1,80}$", required=False, write_only=True)


class ThrottledSerializer(serializers.Serializer[dict[str, Any]]):
    """429: DRF's throttle answer (`Retry-After` says when to try again)."""

    detail = serializers.CharField()
