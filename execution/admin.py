"""Inspection of execution state. Rows change only through services, so these pages are read-only.

Also the account actions that call execution services (kill switch, reconciliation): the
accounts app cannot import execution, so its AccountAdmin is re-registered here with them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.admin import AccountAdmin as AccountsAccountAdmin
from accounts.models import Account
from execution.aster.numbers import format_decimal
from execution.exceptions import ExecutionError
from execution.models import (
    Alert,
    EquitySnapshot,
    ExchangeFill,
    ExecutionEvent,
    FundingPayment,
    Heartbeat,
    PendingOrder,
    Position,
    PriceCacheEntry,
    ReconciliationItem,
    ReconciliationRun,
    StreamLease,
    StreamStatus,
    Trade,
)
from execution.services import kill_switch
from execution.tasks import reconcile_account_task


class ModeFilter(admin.SimpleListFilter):
    title = "mode"
    parameter_name = "mode"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("paper", "Paper"), ("live", "Live")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("paper", "live"):
            return queryset.filter(account__is_paper_trading=self.value() == "paper")
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def decimal_column(field: str, label: str | None = None) -> Any:
    """A list column showing a Decimal without the 10 storage decimals ("65000.5", not "65000.5000000000")."""

    def show(obj: Any) -> str:
        value = getattr(obj, field)
        return "" if value is None else format_decimal(value)

    show.short_description = label or field.replace("_", " ")  # type: ignore[attr-defined]
    show.admin_order_field = field  # type: ignore[attr-defined]
    return show


def account_mode(obj: Any) -> str:
    return obj.account.mode if obj.account_id else ""


account_mode.short_description = "Mode"  # type: ignore[attr-defined]


def mark_age(obj: Any) -> str:
    """How old the position's mark is (a live position keeps its last mark while the stream is down)."""
    if obj.marked_at is None:
        return "never marked"
    seconds = int((timezone.now() - obj.marked_at).total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


mark_age.short_description = "Mark age"  # type: ignore[attr-defined]
mark_age.admin_order_field = "marked_at"  # type: ignore[attr-defined]


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        account_mode,
        "symbol",
        "side",
        decimal_column("quantity"),
        decimal_column("entry_price", "entry"),
        "leverage",
        decimal_column("mark_price", "mark"),
        decimal_column("unrealized_pnl", "uPnL"),
        decimal_column("realized_pnl", "realized"),
        decimal_column("liquidation_price", "liquidation"),
        "status",
        "opened_at",
        "marked_at",
        mark_age,
    ]
    list_filter = [ModeFilter, "status", "side", "symbol", "source", "account"]
    search_fields = ["symbol", "account__name"]
    list_select_related = ["account"]
    date_hierarchy = "opened_at"


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        account_mode,
        "symbol",
        "side",
        decimal_column("quantity"),
        decimal_column("price"),
        decimal_column("fee"),
        decimal_column("realized_pnl", "realized"),
        "reason",
        "status",
        "client_order_id",
        "exchange_order_id",
    ]
    list_filter = [ModeFilter, "status", "reason", "side", "symbol", "account"]
    search_fields = ["symbol", "client_order_id", "exchange_order_id", "account__name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"


@admin.register(PendingOrder)
class PendingOrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        account_mode,
        "symbol",
        "kind",
        "side",
        decimal_column("trigger_price", "trigger"),
        "working_type",
        "status",
        "sibling_id",
        "client_order_id",
        "exchange_order_id",
        "created_at",
    ]
    list_filter = [ModeFilter, "status", "kind", "working_type", "symbol", "account"]
    search_fields = ["symbol", "client_order_id", "exchange_order_id", "account__name"]
    list_select_related = ["account", "sibling"]


@admin.register(ExecutionEvent)
class ExecutionEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "kind",
        "subject_type",
        "subject_id",
        "from_status",
        "to_status",
        "message",
    ]
    list_filter = [ModeFilter, "kind", "subject_type", "account"]
    search_fields = ["kind", "message", "account__name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"


@admin.register(FundingPayment)
class FundingPaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "funding_time",
        "account",
        "symbol",
        "position",
        decimal_column("rate"),
        decimal_column("mark_price", "mark"),
        decimal_column("quantity"),
        decimal_column("amount"),
    ]
    list_filter = ["symbol", "account"]
    list_select_related = ["account", "position"]
    date_hierarchy = "funding_time"


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "account", "message", "delivered_at", "attempts", "last_error"]
    list_filter = ["kind", "account"]
    search_fields = ["message", "cause", "account__name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyAdmin):
    list_display = [
        "taken_at",
        "account",
        decimal_column("wallet"),
        decimal_column("unrealized_pnl", "uPnL"),
        decimal_column("equity"),
        decimal_column("margin_in_use", "margin"),
    ]
    list_filter = ["account"]
    list_select_related = ["account"]
    date_hierarchy = "taken_at"


RECONCILIATION_ITEM_FIELDS = ("kind", "symbol", "local", "remote", "action", "outcome", "message")


class ReconciliationItemInline(admin.TabularInline[ReconciliationItem, ReconciliationRun]):
    model = ReconciliationItem
    fields = RECONCILIATION_ITEM_FIELDS
    readonly_fields = RECONCILIATION_ITEM_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "started_at", "account", "status", "dry_run", "differences", "http_calls", "message"]
    list_filter = ["status", "dry_run", "account"]
    search_fields = ["account__name", "message"]
    list_select_related = ["account"]
    date_hierarchy = "started_at"
    inlines = [ReconciliationItemInline]


admin.site.unregister(Account)


@admin.register(Account)
class AccountAdmin(AccountsAccountAdmin):
    actions = ["halt_trading", *AccountsAccountAdmin.actions, "reconcile_now"]

    @admin.action(description="Halt trading (kill switch: cancel entry orders, keep stops)")
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            try:
                report = kill_switch.halt_trading(account=account, reason=f"admin {request.user}")
            except ExecutionError as exc:
                self.message_user(request, f"{account}: halted, but open orders not checked: {exc}", messages.ERROR)
                continue
            self.message_user(
                request, f"{account}: halted; cancelled {len(report.cancelled)} entry order(s), kept {len(report.kept)}"
            )

    @admin.action(description="Reconcile now with the exchange (live accounts; queued for the worker)")
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        """Queue one reconciliation task per live account: no exchange call inside the web request.
        The results appear under Reconciliation runs once the worker has run them."""
        queued = []
        for account in queryset:
            if account.is_paper_trading:
                self.message_user(request, f"{account}: paper accounts are not reconciled", messages.WARNING)
                continue
            try:
                reconcile_account_task.delay(account.pk)
            except OperationalError as exc:  # the broker is unreachable
                self.message_user(request, f"{account}: could not queue reconciliation: {exc}", messages.ERROR)
                continue
            queued.append(str(account))
        if queued:
            self.message_user(
                request,
                f"queued reconciliation of {', '.join(queued)}; see Reconciliation runs for the results",
                messages.SUCCESS,
            )


def price_age(obj: Any) -> str:
    """The mark's age by exchange time (EXECUTION_STALE_PRICE_SECONDS decides whether it trades)."""
    if not obj.event_time_ms:
        return "no mark"
    return f"{timezone.now().timestamp() - obj.event_time_ms / 1000:.1f} s"


price_age.short_description = "Mark age"  # type: ignore[attr-defined]


@admin.register(PriceCacheEntry)
class PriceCacheEntryAdmin(ReadOnlyAdmin):
    """The table face of the price cache (used when REDIS_URL is not set; with Redis it stays empty)."""

    list_display = [
        "symbol",
        decimal_column("mark_price", "mark"),
        decimal_column("index_price", "index"),
        decimal_column("last_price", "last"),
        decimal_column("funding_rate", "funding"),
        price_age,
        "received_at",
    ]
    search_fields = ["symbol"]


@admin.register(StreamStatus)
class StreamStatusAdmin(ReadOnlyAdmin):
    """What each stream connection last reported (written by `aster_stream` every few seconds)."""

    list_display = [
        "name",
        "kind",
        "account",
        "holder",
        "connected",
        "last_frame_at",
        "lag_ms",
        "reconnects",
        "dropped_frames",
        "updated_at",
    ]
    list_filter = ["kind", "connected"]
    search_fields = ["name", "holder"]


@admin.register(StreamLease)
class StreamLeaseAdmin(ReadOnlyAdmin):
    list_display = ["account", "holder", "acquired_at", "expires_at"]
    search_fields = ["holder"]


@admin.register(ExchangeFill)
class ExchangeFillAdmin(ReadOnlyAdmin):
    """Exchange trades seen by the user-data stream or reconciliation (each booked once)."""

    list_display = [
        "account",
        "symbol",
        "side",
        decimal_column("quantity", "quantity"),
        decimal_column("price", "price"),
        decimal_column("commission", "commission"),
        decimal_column("realized_pnl", "realized PnL"),
        "exchange_order_id",
        "exchange_trade_id",
        "trade",
        "created_at",
    ]
    list_filter = ["symbol"]
    search_fields = ["exchange_order_id", "client_order_id"]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at", "seconds"]
