from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from accounts.models import Account, ApiVersion
from execution.models import PendingOrder, Position, Trade
from execution.services.position_math import roe


class AccountSerializer(serializers.ModelSerializer[Account]):
    """Accounts as the API shows them: settings and state; credentials only as set / not set."""

    mode = serializers.CharField(read_only=True)
    paper_wallet = serializers.DecimalField(max_digits=28, decimal_places=10, read_only=True)
    wallet_balance = serializers.SerializerMethodField(
        help_text="The account's wallet: a live account's from the exchange (user-data stream; null until "
        "the first ACCOUNT_UPDATE), a paper account's paper wallet."
    )
    wallet_balance_at = serializers.DateTimeField(
        source="live_balance_at",
        read_only=True,
        allow_null=True,
        help_text="Live accounts: the exchange time of the wallet balance shown; null for paper accounts.",
    )
    credentials = serializers.SerializerMethodField()
    api_version = serializers.ChoiceField(
        choices=ApiVersion.choices,
        allow_blank=True,
        read_only=True,
        help_text='Credentials scheme of a live account (v1: HMAC key, v3: EIP-712 wallet); "" when none is set.',
    )

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
            "wallet_balance",
            "wallet_balance_at",
            "margin_type",
            "api_version",
            "credentials",
            "created_at",
        ]
        read_only_fields = fields

    def get_wallet_balance(self, account: Account) -> str | None:
        wallet = account.paper_wallet if account.is_paper_trading else account.live_wallet_balance
        return None if wallet is None else str(wallet)

    def get_credentials(self, account: Account) -> dict[str, str]:
        return {name: "set" if getattr(account, name) else "not set" for name in Account.SECRET_FIELDS}


class PositionSerializer(serializers.ModelSerializer[Position]):
    mode = serializers.CharField(source="account.mode", read_only=True)
    roe = serializers.SerializerMethodField(
        help_text="Return on equity at the stored mark: uPnL / (quantity x mark / leverage); "
        "null before the first mark."
    )
    mark_age_seconds = serializers.SerializerMethodField(
        help_text="How long ago the mark was taken (`marked_at`); null before the first mark. A live "
        "position keeps its last mark while the price stream is down, and this says how old it is."
    )

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
            "mark_age_seconds",
            "roe",
        ]
        read_only_fields = fields

    def get_roe(self, position: Position) -> str | None:
        if position.mark_price is None:
            return None
        value = roe(position.side, position.quantity, position.entry_price, position.mark_price, position.leverage)
        return str(value.quantize(Decimal("0.000001")))

    def get_mark_age_seconds(self, position: Position) -> float | None:
        if position.marked_at is None:
            return None
        return round((timezone.now() - position.marked_at).total_seconds(), 3)


class TradeSerializer(serializers.ModelSerializer[Trade]):
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
            "reserved_margin",
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


class PendingOrderSerializer(serializers.ModelSerializer[PendingOrder]):
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
            "venue_cancel_pending",
            "created_at",
            "triggered_at",
            "closed_at",
        ]
        read_only_fields = fields


class PriceReadingSerializer(serializers.Serializer[dict[str, Any]]):
    """A cached price as the order path judges it (`execution.services.price_cache`)."""

    value = serializers.DecimalField(max_digits=28, decimal_places=10)
    event_time_ms = serializers.IntegerField(help_text="The exchange's time of the price (ms).")
    age_seconds = serializers.FloatField(help_text="Its age by exchange time.")
    fresh = serializers.BooleanField(help_text="Young enough for a trade decision (EXECUTION_STALE_PRICE_SECONDS).")


class AccountStatusSerializer(serializers.Serializer[dict[str, Any]]):
    account = AccountSerializer()
    open_positions = PositionSerializer(many=True)
    mark_prices = serializers.DictField(
        child=PriceReadingSerializer(),
        help_text="The price cache's mark of each open position's symbol, with its age (absent: nothing cached).",
    )
    pending_orders = serializers.IntegerField()
    unrealized_pnl = serializers.DecimalField(max_digits=28, decimal_places=10)
    margin_in_use = serializers.DecimalField(max_digits=28, decimal_places=10)
    unknown_intents = serializers.IntegerField()
    last_reconciliation = serializers.DictField(allow_null=True)


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """An error the API's handler writes (execution.api.errors): a message and a stable code."""

    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="What went wrong, for programs (e.g. a risk code, IDEMPOTENCY_MISMATCH).")
