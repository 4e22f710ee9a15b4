"""Inspection of execution state. Rows change only through services, so these pages are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from execution.aster.numbers import format_decimal
from execution.models import (
    ExecutionEvent,
    FundingPayment,
    PendingOrder,
    Position,
    ReconciliationItem,
    ReconciliationRun,
    Trade,
)


class ModeFilter(admin.SimpleListFilter):
    title = "mode"
    parameter_name = "mode"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("paper", "Paper"), ("live", "Live")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("paper", "live"):
            return queryset.filter(account__is_paper_trading=self.value() == "paper")
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
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


class ReconciliationItemInline(admin.TabularInline):
    model = ReconciliationItem
    fields = ["kind", "symbol", "local", "remote", "action", "outcome", "message"]
    readonly_fields = fields
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
