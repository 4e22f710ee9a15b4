"""Trades (order intents and fills), positions, protective orders and the audit trail.

Each stateful model lists its allowed status transitions in one table (`TRANSITIONS`);
`accounts.audit` (`transition`, `transition_unsaved`, `bulk_transition`) is the only code that
changes a status, and it writes an ExecutionEvent in the same transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q

from accounts.display import plain_decimal, plain_time
from accounts.models import Account
from accounts.models import (
    ExecutionEvent as ExecutionEvent,
)  # the audit trail lives with accounts (apps depend one way)


def money_field(**kwargs: Any) -> models.DecimalField[Any, Decimal]:
    """Prices, quantities and amounts: Decimal with 18 integer and 10 fractional digits."""
    return models.DecimalField(max_digits=28, decimal_places=10, **kwargs)


class Side(models.TextChoices):
    BUY = "BUY", "Buy"
    SELL = "SELL", "Sell"


class PositionSide(models.TextChoices):
    LONG = "LONG", "Long"
    SHORT = "SHORT", "Short"


class WorkingType(models.TextChoices):
    MARK_PRICE = "MARK_PRICE", "Mark price"
    CONTRACT_PRICE = "CONTRACT_PRICE", "Last price"


class TradeStatus(models.TextChoices):
    SUBMITTING = "submitting", "Submitting"
    UNKNOWN = "unknown", "Unknown (ambiguous submission)"
    FILLED = "filled", "Filled"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled / expired unfilled"


class TradeReason(models.TextChoices):
    ENTRY = "entry", "Entry"
    EXIT = "exit", "Exit"
    TAKE_PROFIT = "take_profit", "Take profit"
    STOP_LOSS = "stop_loss", "Stop loss"
    LIQUIDATION = "liquidation", "Liquidation"
    FUNDING = "funding", "Funding"
    RECONCILIATION = "reconciliation", "Reconciliation"
    PROTECTION_FAILURE = "protection_failure", "Closed: protection could not be placed"


class PositionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class PositionSource(models.TextChoices):
    EXECUTION = "execution", "Execution service"
    RECONCILIATION = "reconciliation", "Adopted by reconciliation"


class PendingOrderKind(models.TextChoices):
    TAKE_PROFIT = "take_profit", "Take profit"
    STOP_LOSS = "stop_loss", "Stop loss"


class PendingOrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    TRIGGERED = "triggered", "Triggered"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class Trade(models.Model):
    """An order intent and, once filled, its fill. `client_order_id` is the idempotency key."""

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        TradeStatus.SUBMITTING: frozenset(
            {TradeStatus.FILLED, TradeStatus.REJECTED, TradeStatus.UNKNOWN, TradeStatus.CANCELLED}
        ),
        TradeStatus.UNKNOWN: frozenset({TradeStatus.FILLED, TradeStatus.REJECTED, TradeStatus.CANCELLED}),
        TradeStatus.FILLED: frozenset(),
        TradeStatus.REJECTED: frozenset(),
        TradeStatus.CANCELLED: frozenset(),
    }

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="trades")
    position = models.ForeignKey(
        "execution.Position", on_delete=models.PROTECT, null=True, blank=True, related_name="trades"
    )
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=Side.choices)
    requested_quantity = money_field()
    quantity = money_field(help_text="Executed quantity once filled; requested before.")
    price = money_field(null=True, blank=True, help_text="Average fill price.")
    fee = money_field(default=Decimal("0"))
    fee_asset = models.CharField(max_length=16, default="USDT")
    realized_pnl = money_field(default=Decimal("0"), help_text="Net of this trade's fee.")
    leverage = models.PositiveSmallIntegerField(null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    reserved_margin = money_field(
        default=Decimal("0"), help_text="Margin and fees held for this intent while it is in flight."
    )
    take_profit = money_field(null=True, blank=True, help_text="Protection the intent asked for.")
    stop_loss = money_field(null=True, blank=True, help_text="Protection the intent asked for.")
    client_order_id = models.CharField(max_length=36, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=TradeStatus.choices, default=TradeStatus.SUBMITTING)
    reason = models.CharField(max_length=24, choices=TradeReason.choices, default=TradeReason.ENTRY)
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    filled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "status"], name="trade_account_status"),
            models.Index(fields=["account", "reason", "-created_at"], name="trade_account_reason_recent"),
            models.Index(fields=["account", "filled_at"], name="trade_account_filled_at"),
            # In-flight intents are few: the sweeps that look for stale ones read only these.
            models.Index(
                fields=["created_at"], condition=Q(status__in=["submitting", "unknown"]), name="trade_in_flight"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(requested_quantity__gt=0), name="trade_requested_quantity_positive"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gt=0), name="trade_price_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="trade_fee_non_negative"),
            models.CheckConstraint(condition=Q(reserved_margin__gte=0), name="trade_reserved_margin_non_negative"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="trade_side_valid"),
            models.CheckConstraint(condition=Q(status__in=TradeStatus.values), name="trade_status_valid"),
            models.CheckConstraint(condition=Q(reason__in=TradeReason.values), name="trade_reason_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {plain_decimal(self.quantity)} {self.symbol} [{self.status}] {self.client_order_id}"


# Trades the order path still waits on (their outcome is not booked yet).
TRADE_IN_FLIGHT = frozenset({TradeStatus.SUBMITTING, TradeStatus.UNKNOWN})
# Entries that count for the cooldown: sent, maybe sent, or done.
TRADE_IN_FLIGHT_OR_FILLED = TRADE_IN_FLIGHT | {TradeStatus.FILLED}


class Position(models.Model):
    """A one-way position: at most one open row per (account, symbol)."""

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        PositionStatus.OPEN: frozenset({PositionStatus.CLOSED}),
        PositionStatus.CLOSED: frozenset(),
    }

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="positions")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    quantity = money_field(help_text="Absolute size; > 0 while open, 0 once closed.")
    entry_price = money_field()
    leverage = models.PositiveSmallIntegerField()
    margin = money_field(default=Decimal("0"), help_text="Isolated margin (entry notional / leverage).")
    mark_price = money_field(null=True, blank=True)
    unrealized_pnl = money_field(default=Decimal("0"))
    realized_pnl = money_field(default=Decimal("0"), help_text="Net of fees and funding.")
    fees_paid = money_field(default=Decimal("0"))
    funding_paid = money_field(default=Decimal("0"), help_text="Positive: paid; negative: received.")
    liquidation_price = money_field(null=True, blank=True)
    take_profit = money_field(null=True, blank=True, help_text="Requested take-profit trigger.")
    stop_loss = money_field(null=True, blank=True, help_text="Requested stop-loss trigger.")
    needs_protection = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=PositionSource.choices, default=PositionSource.EXECUTION)
    status = models.CharField(max_length=8, choices=PositionStatus.choices, default=PositionStatus.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    marked_at = models.DateTimeField(null=True, blank=True)
    last_funding_time = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(fields=["status", "symbol"], name="position_status_symbol"),
            # The sweep's liquidation search: a price range per (symbol, side) among open positions.
            models.Index(
                fields=["symbol", "side", "liquidation_price"],
                condition=Q(status="open", liquidation_price__isnull=False),
                name="position_liquidation_lookup",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "symbol"], condition=Q(status="open"), name="one_open_position_per_symbol"
            ),
            models.CheckConstraint(
                condition=(Q(status="open") & Q(quantity__gt=0)) | (Q(status="closed") & Q(quantity__gte=0)),
                name="position_quantity_positive_while_open",
            ),
            models.CheckConstraint(condition=Q(entry_price__gt=0), name="position_entry_price_positive"),
            models.CheckConstraint(
                condition=Q(leverage__gte=1) & Q(leverage__lte=125), name="position_leverage_in_range"
            ),
            models.CheckConstraint(condition=Q(side__in=PositionSide.values), name="position_side_valid"),
            models.CheckConstraint(condition=Q(status__in=PositionStatus.values), name="position_status_valid"),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("opened_at")),
                name="position_closed_after_opened",
            ),
        ]

    def __str__(self) -> str:
        quantity, entry = plain_decimal(self.quantity), plain_decimal(self.entry_price)
        return f"{self.side} {quantity} {self.symbol} @ {entry} [{self.status}]"

    @property
    def direction(self) -> int:
        return 1 if self.side == PositionSide.LONG else -1


class PendingOrder(models.Model):
    """A protective order: a paper trigger held in the database, or a resting exchange order."""

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        PendingOrderStatus.PENDING: frozenset(
            {
                PendingOrderStatus.TRIGGERED,
                PendingOrderStatus.FILLED,
                PendingOrderStatus.CANCELLED,
                PendingOrderStatus.FAILED,
            }
        ),
        PendingOrderStatus.TRIGGERED: frozenset(
            {PendingOrderStatus.FILLED, PendingOrderStatus.FAILED, PendingOrderStatus.CANCELLED}
        ),
        PendingOrderStatus.FAILED: frozenset({PendingOrderStatus.CANCELLED}),
        PendingOrderStatus.FILLED: frozenset(),
        PendingOrderStatus.CANCELLED: frozenset(),
    }

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="pending_orders")
    position = models.ForeignKey(
        Position, on_delete=models.PROTECT, null=True, blank=True, related_name="pending_orders"
    )
    symbol = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=PendingOrderKind.choices)
    side = models.CharField(max_length=4, choices=Side.choices)
    trigger_price = money_field()
    working_type = models.CharField(max_length=16, choices=WorkingType.choices, default=WorkingType.MARK_PRICE)
    quantity = money_field(null=True, blank=True, help_text="Empty: closes the whole position.")
    status = models.CharField(max_length=16, choices=PendingOrderStatus.choices, default=PendingOrderStatus.PENDING)
    client_order_id = models.CharField(max_length=36, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    sibling = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The other leg."
    )
    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    error_message = models.TextField(blank=True, default="")
    venue_cancel_pending = models.BooleanField(
        default=False,
        help_text="Final here but maybe still resting on the exchange: to be cancelled there (retried until it is).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    triggered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "symbol"], name="pendingorder_status_symbol"),
            # The sweep's trigger search: a price range per (symbol, kind, side) among pending orders.
            models.Index(
                fields=["symbol", "kind", "side", "trigger_price"],
                condition=Q(status="pending"),
                name="pendingorder_trigger_lookup",
            ),
            models.Index(fields=["account", "status"], name="pendingorder_account_status"),
            models.Index(fields=["account"], condition=Q(venue_cancel_pending=True), name="pendingorder_venue_cancel"),
            # The sweep's list of symbols needing a last price (a loose index scan, a few rows).
            models.Index(
                fields=["symbol"],
                condition=Q(status="pending", working_type="CONTRACT_PRICE"),
                name="pendingorder_contract_symbols",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(trigger_price__gt=0), name="pendingorder_trigger_positive"),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(quantity__gt=0), name="pendingorder_quantity_positive"
            ),
            models.CheckConstraint(condition=Q(kind__in=PendingOrderKind.values), name="pendingorder_kind_valid"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="pendingorder_side_valid"),
            models.CheckConstraint(
                condition=Q(working_type__in=WorkingType.values), name="pendingorder_working_type_valid"
            ),
            models.CheckConstraint(condition=Q(status__in=PendingOrderStatus.values), name="pendingorder_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.side} {self.symbol} @ {plain_decimal(self.trigger_price)} [{self.status}]"


# Not final: a protective order in one of these is cancelled when its position closes (no
# protective order survives its position). `failed` is here because it can still be cancelled.
ACTIVE_PROTECTIVE = frozenset({PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED, PendingOrderStatus.FAILED})
# Armed: expected to rest on the exchange (live) or to trigger (paper). A `failed` leg is not.
ARMED_PROTECTIVE = frozenset({PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED})


class FundingPayment(models.Model):
    """One funding settlement of one paper position: positive amount = paid, negative = received."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="funding_payments")
    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="funding_payments")
    symbol = models.CharField(max_length=32)
    funding_time = models.DateTimeField()
    rate = money_field()
    mark_price = money_field()
    quantity = money_field()
    amount = money_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-funding_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["position", "funding_time"], name="one_funding_payment_per_settlement")
        ]

    def __str__(self) -> str:
        return f"{self.symbol} funding {plain_time(self.funding_time)} {plain_decimal(self.amount)}"


class ReconciliationStatus(models.TextChoices):
    RUNNING = "running", "Running"
    IN_SYNC = "in_sync", "In sync"
    REPAIRED = "repaired", "Differences repaired"
    FAILED = "failed", "Could not reconcile"
    SKIPPED = "skipped", "Skipped (another run holds the account)"
    DRY_RUN = "dry_run", "Dry run"


class ReconciliationRun(models.Model):
    """One reconciliation of one live account: what differed from the exchange and what was done."""

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        ReconciliationStatus.RUNNING: frozenset(
            {
                ReconciliationStatus.IN_SYNC,
                ReconciliationStatus.REPAIRED,
                ReconciliationStatus.FAILED,
                ReconciliationStatus.SKIPPED,
                ReconciliationStatus.DRY_RUN,
            }
        ),
        **{status: frozenset() for status in ReconciliationStatus.values if status != ReconciliationStatus.RUNNING},
    }

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="reconciliation_runs")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ReconciliationStatus.choices, default=ReconciliationStatus.RUNNING)
    differences = models.PositiveIntegerField(default=0)
    http_calls = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ReconciliationStatus.values), name="reconciliationrun_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"reconciliation #{self.pk} of account {self.account_id}: {self.status}"


class ReconciliationItem(models.Model):
    """One difference found by a run: local versus remote, the action taken and its outcome."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32, blank=True, default="")
    local = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    remote = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    action = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=16, default="")
    message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol}: {self.action} [{self.outcome}]"


class PriceCacheEntry(models.Model):
    """The price cache's database face (the embedded default; Redis holds it when REDIS_URL is
    set). One row per symbol, written by the stream process in one statement per batch and read
    by every process through `execution.services.price_cache`."""

    symbol = models.CharField(max_length=32, primary_key=True)
    mark_price = money_field(null=True, blank=True)
    index_price = money_field(null=True, blank=True)
    last_price = money_field(null=True, blank=True)
    funding_rate = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    next_funding_time_ms = models.BigIntegerField(default=0)
    event_time_ms = models.BigIntegerField(default=0, help_text="Exchange time of the mark price (ms).")
    last_event_time_ms = models.BigIntegerField(default=0, help_text="Exchange time of the last price (ms).")
    received_at = models.DateTimeField(help_text="When this process received the latest update.")

    class Meta:
        verbose_name_plural = "price cache entries"

    def __str__(self) -> str:
        return f"{self.symbol} mark {plain_decimal(self.mark_price)} last {plain_decimal(self.last_price)}"


class StreamKind(models.TextChoices):
    MARKET = "market", "Market data"
    USER = "user", "User data"


class StreamStatus(models.Model):
    """What one stream connection last reported: for operators, the health check and the
    reconciliation schedule. Written by the stream process at most every few seconds."""

    name = models.CharField(max_length=200, primary_key=True)
    kind = models.CharField(max_length=8, choices=StreamKind.choices)
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, null=True, blank=True, related_name="stream_statuses"
    )
    holder = models.CharField(max_length=120, blank=True, default="", help_text="host:pid of the process.")
    connected = models.BooleanField(default=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_frame_at = models.DateTimeField(null=True, blank=True)
    last_event_time_ms = models.BigIntegerField(default=0)
    lag_ms = models.IntegerField(null=True, blank=True, help_text="Receipt time minus exchange event time.")
    reconnects = models.PositiveIntegerField(default=0)
    dropped_frames = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["kind", "name"]
        verbose_name_plural = "stream statuses"
        constraints = [models.CheckConstraint(condition=Q(kind__in=StreamKind.values), name="streamstatus_kind_valid")]

    def __str__(self) -> str:
        return f"{self.name} [{'connected' if self.connected else 'down'}]"


class StreamLease(models.Model):
    """Which stream process holds an account's user-data stream, until when. Taken and renewed
    with a conditional UPDATE, so that no account is streamed by two processes at once; a dead
    holder's lease lapses and another process takes the account over."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, primary_key=True, related_name="stream_lease")
    holder = models.CharField(max_length=120)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"account {self.account_id} held by {self.holder} until {self.expires_at:%H:%M:%S}"


class ExchangeFill(models.Model):
    """One exchange trade (order id, trade id) seen by the user-data stream or reconciliation:
    the key that makes a fill delivered twice, or booked by both, count once."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="exchange_fills")
    symbol = models.CharField(max_length=32)
    exchange_order_id = models.CharField(max_length=64)
    exchange_trade_id = models.CharField(max_length=64)
    client_order_id = models.CharField(max_length=64, blank=True, default="")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = money_field()
    price = money_field()
    commission = money_field(default=Decimal("0"))
    realized_pnl = money_field(default=Decimal("0"))
    trade = models.ForeignKey(Trade, on_delete=models.SET_NULL, null=True, blank=True, related_name="exchange_fills")
    event_time_ms = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "exchange_order_id", "exchange_trade_id"], name="exchangefill_once"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="exchangefill_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="exchangefill_price_positive"),
        ]

    def __str__(self) -> str:
        quantity, price = plain_decimal(self.quantity), plain_decimal(self.price)
        return f"{self.side} {quantity} {self.symbol} @ {price} (order {self.exchange_order_id})"


class Heartbeat(models.Model):
    """When a periodic job (the paper sweep, the reconciliation beat) last finished, for the
    readiness check: kept in the database so every process sees every other's."""

    name = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()
    seconds = models.FloatField(default=0.0, help_text="How long the job took.")
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class EquitySnapshot(models.Model):
    """An account's equity at one minute, written by beat (execution.take_equity_snapshots).
    Paper: the paper wallet and the open positions' uPnL. Live: the exchange wallet
    (`Account.live_wallet_balance`, from the user-data stream) when known, else the last known."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="equity_snapshots")
    taken_at = models.DateTimeField()
    wallet = money_field()
    unrealized_pnl = money_field()
    equity = money_field()
    margin_in_use = money_field()

    class Meta:
        ordering = ["taken_at", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "taken_at"], name="one_equity_snapshot_per_time")]

    def __str__(self) -> str:
        return f"equity of account {self.account_id} at {plain_time(self.taken_at)}: {plain_decimal(self.equity)}"


class AlertKind(models.TextChoices):
    PROTECTION_FAILED = "protection_failed", "Protection failed"
    LIQUIDATION = "liquidation", "Liquidation"
    TRADING_STATE = "trading_state", "Account reducing or halted"
    UNKNOWN_INTENT = "unknown_intent", "Order outcome unresolved"
    RECONCILIATION = "reconciliation", "Reconciliation difference not repaired"
    STREAM_DOWN = "stream_down", "Stream down"


class Alert(models.Model):
    """Something a person must look at; delivered to ALERT_WEBHOOK_URL when set
    (execution.services.alerts). `cause` identifies what raised it: the same cause within the
    dedupe window raises no second alert. Never holds a secret."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alerts", null=True, blank=True)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    message = models.TextField()
    cause = models.CharField(max_length=200, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:60]}"


class ParityKind(models.TextChoices):
    ENTRY = "entry", "Entry"
    CLOSE = "close", "Close"
    FLIP = "flip", "Flip"
    TAKE_PROFIT = "take_profit", "Take-profit"
    STOP_LOSS = "stop_loss", "Stop-loss"
    FUNDING = "funding", "Funding"


class ParityRecord(models.Model):
    """What paper would have done for one live fill (or one funding settlement), next to what live
    did (execution.services.parity). Slippage is signed so that live worse than paper is positive,
    for buys and sells; fee_diff = live fee - shadow fee. Written outside the order's
    transactions; a failure to write one never fails the order."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="parity_records")
    trade = models.ForeignKey(Trade, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    pending_order = models.ForeignKey(PendingOrder, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # What the record is about, unique per account: the trade's client order id, the leg fill's
    # `<leg client id>:<exchange trade id>`, or `funding:<symbol>:<funding time ms>`.
    source_key = models.CharField(max_length=120)
    symbol = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=ParityKind.choices)
    side = models.CharField(max_length=4, choices=Side.choices, blank=True, default="")
    quantity = money_field()
    live_price = money_field(null=True, blank=True)
    shadow_price = money_field(null=True, blank=True)
    slippage_bps = money_field(null=True, blank=True)
    live_fee = money_field(default=Decimal("0"))
    shadow_fee = money_field(default=Decimal("0"))
    fee_diff = money_field(default=Decimal("0"))
    # TP/SL: when the exchange filled vs when paper's trigger rule would have fired (ms, positive:
    # paper later), and the trigger-time price paper would have used.
    live_at = models.DateTimeField(null=True, blank=True)
    shadow_at = models.DateTimeField(null=True, blank=True)
    trigger_delay_ms = models.IntegerField(null=True, blank=True)
    trigger_price_diff = money_field(null=True, blank=True)
    # Market orders: the book's exchange time relative to the send (positive: the book is older).
    book_age_ms = models.IntegerField(null=True, blank=True)
    stale = models.BooleanField(default=False)
    # Funding: what live paid (positive: paid) and what paper's rule would have charged.
    live_funding = money_field(null=True, blank=True)
    shadow_funding = money_field(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="parity_account_recent"),
            # The market stream looks for TP/SL records waiting for paper's trigger on every batch.
            models.Index(
                fields=["created_at"],
                condition=Q(shadow_at__isnull=True, kind__in=["take_profit", "stop_loss"]),
                name="parity_awaiting_trigger",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["account", "source_key"], name="one_parity_record_per_fill"),
            models.UniqueConstraint(
                fields=["trade"], condition=Q(trade__isnull=False), name="one_parity_record_per_trade"
            ),
            models.CheckConstraint(condition=Q(kind__in=ParityKind.values), name="parity_kind_valid"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="parity_quantity_not_negative"),
        ]

    def __str__(self) -> str:
        slippage = "-" if self.slippage_bps is None else plain_decimal(self.slippage_bps)
        return f"parity {self.kind} {self.symbol} {slippage} bps"
