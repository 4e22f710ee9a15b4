"""Inspection of execution state. Rows change only through services, so these pages are read-only.

Also the account actions that call execution services (kill switch, reconciliation): the
accounts app cannot import execution, so its AccountAdmin is re-registered here with them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from kombu.exceptions import OperationalError

from accounts.admin import AccountAdmin as AccountsAccountAdmin
from accounts.admin import Column, json_column, plain_column, time_column
from accounts.admin import decimal_column as decimal_column  # also for decisions/admin.py
from accounts.display import plain_decimal, plain_time
from accounts.models import Account
from execution.exceptions import ExecutionError
from execution.models import (
    Alert,
    EquitySnapshot,
    ExchangeFill,
    ExecutionEvent,
    FundingPayment,
    Heartbeat,
    ParityRecord,
    PendingOrder,
    Position,
    PositionStatus,
    PriceCacheEntry,
    ReconciliationItem,
    ReconciliationRun,
    StreamLease,
    StreamStatus,
    Trade,
)
from execution.services import kill_switch
from execution.tasks import reconcile_account_task

# The lists are wide (a dozen columns of figures): without the navigation sidebar (270 px) they
# fit a 1440 px screen. The home page and the breadcrumbs still lead everywhere.
admin.site.enable_nav_sidebar = False
# Denser list cells, a narrower filter column (every page of this module, and the account pages).
LIST_CSS = "execution/admin.css"


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
    """A view-only page. Its Decimal, time and JSON fields read plainly everywhere: in the list
    (a field named in list_display is swapped for its plain column) and on the detail page
    (every such field is shown, by its plain column, the times the form leaves out included)."""

    class Media:
        css = {"all": [LIST_CSS]}

    def __init__(self, model: Any, admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        # One column object per field, kept: the detail page matches its read-only fields by identity.
        self.plain_columns: dict[str, Column] = {
            field.name: column for field in model._meta.fields if (column := plain_column(field)) is not None
        }

    # Typed Any: Django takes callables in these lists, the stubs only strings.
    def get_list_display(self, request: HttpRequest) -> Any:
        return [self._plain(name) for name in super().get_list_display(request)]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields: list[Any] = []
        for name in super().get_fields(request, obj):
            field = self._plain(name)
            if field not in fields:  # the plain columns come again at the end, as read-only fields
                fields.append(field)
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *self.plain_columns.values()]

    def _plain(self, name: Any) -> Any:
        return self.plain_columns.get(name, name) if isinstance(name, str) else name

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def short_text(field: str, limit: int, label: str | None = None) -> Column:
    """A long text cut to `limit` characters in the list (the whole of it on hover and on the detail page)."""

    def column(obj: Any) -> str:
        text = str(getattr(obj, field) or "")
        if len(text) <= limit:
            return text
        return format_html('<span title="{}">{}…</span>', text, text[: limit - 1])

    column.__name__ = field
    column.short_description = label or field.replace("_", " ")  # type: ignore[attr-defined]
    column.admin_order_field = field  # type: ignore[attr-defined]
    return column


def side_leverage(obj: Position) -> str:
    """The side and the leverage in one narrow column: "Long 10x"."""
    return f"{obj.get_side_display()} {obj.leverage}x"


side_leverage.short_description = "side"  # type: ignore[attr-defined]
side_leverage.admin_order_field = "side"  # type: ignore[attr-defined]


def mark_age(obj: Any) -> str:
    """How old the position's mark is (a live position keeps its last mark while the stream is down)."""
    if obj.marked_at is None:
        return "never"
    seconds = int((timezone.now() - obj.marked_at).total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


mark_age.short_description = "Mark age"  # type: ignore[attr-defined]
mark_age.admin_order_field = "marked_at"  # type: ignore[attr-defined]


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        "symbol",
        side_leverage,
        decimal_column("quantity", "qty"),
        decimal_column("entry_price", "entry"),
        decimal_column("mark_price", "mark"),
        decimal_column("unrealized_pnl", "uPnL"),
        decimal_column("realized_pnl", "realized"),
        decimal_column("liquidation_price", "liq."),
        "status",
        time_column("opened_at", "opened at"),
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
        time_column("created_at", "created"),
        "account",
        "symbol",
        "side",
        decimal_column("quantity", "qty"),
        decimal_column("price"),
        decimal_column("fee"),
        decimal_column("realized_pnl", "realized"),
        "reason",
        "status",
        short_text("client_order_id", 14, "client id"),
    ]
    list_filter = [ModeFilter, "status", "reason", "side", "symbol", "account"]
    search_fields = ["symbol", "client_order_id", "exchange_order_id", "account__name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"


def pending_quantity(obj: PendingOrder) -> str:
    return "whole position" if obj.quantity is None else plain_decimal(obj.quantity)


pending_quantity.short_description = "qty"  # type: ignore[attr-defined]


def position_link(obj: PendingOrder) -> str:
    """The position by its number (its title is as long as a row)."""
    if obj.position_id is None:
        return "-"
    url = reverse("admin:execution_position_change", args=[obj.position_id])
    return format_html('<a href="{}">#{}</a>', url, obj.position_id)


position_link.short_description = "position"  # type: ignore[attr-defined]
position_link.admin_order_field = "position"  # type: ignore[attr-defined]


@admin.register(PendingOrder)
class PendingOrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        time_column("created_at", "created"),
        "account",
        "symbol",
        "kind",
        "side",
        decimal_column("trigger_price", "trigger"),
        pending_quantity,
        "working_type",
        "status",
        position_link,
        short_text("client_order_id", 14, "client id"),
    ]
    list_filter = [ModeFilter, "status", "kind", "working_type", "symbol", "account"]
    search_fields = ["symbol", "client_order_id", "exchange_order_id", "account__name"]
    list_select_related = ["account"]


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
        short_text("message", 90),
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
    list_display = [
        "created_at",
        "kind",
        "account",
        short_text("message", 90),
        "delivered_at",
        "attempts",
        short_text("last_error", 40),
    ]
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
# The local and remote rows are JSON: shown with their numbers in plain notation.
RECONCILIATION_ITEM_COLUMNS: tuple[Any, ...] = tuple(
    json_column(name) if name in ("local", "remote") else name for name in RECONCILIATION_ITEM_FIELDS
)


class ReconciliationItemInline(admin.TabularInline[ReconciliationItem, ReconciliationRun]):
    model = ReconciliationItem
    fields = readonly_fields = RECONCILIATION_ITEM_COLUMNS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "started_at",
        "account",
        "status",
        "dry_run",
        "differences",
        "http_calls",
        short_text("message", 90),
    ]
    list_filter = ["status", "dry_run", "account"]
    search_fields = ["account__name", "message"]
    list_select_related = ["account"]
    date_hierarchy = "started_at"
    inlines = [ReconciliationItemInline]


MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=28, decimal_places=10)


def _positions_sum(field: str, **filters: Any) -> Coalesce:
    """The sum of one Decimal field over the account's positions: a subquery per account row, so
    the list stays at one query however many rows and positions it shows."""
    total = (
        Position.objects.filter(account=OuterRef("pk"), **filters)
        .order_by()
        .values("account")
        .annotate(total=Sum(field))
        .values("total")
    )
    return Coalesce(Subquery(total, output_field=MONEY), Value(Decimal("0")), output_field=MONEY)


def with_figures(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Accounts with what their pages show beside the wallet: the open positions' uPnL and margin,
    the positions' realized PnL (live accounts; paper accounts keep theirs on the account) and the
    last equity snapshot's wallet (a live account whose exchange wallet is not known yet)."""
    last_wallet = EquitySnapshot.objects.filter(account=OuterRef("pk")).order_by("-taken_at").values("wallet")[:1]
    return accounts.annotate(
        open_upnl=_positions_sum("unrealized_pnl", status=PositionStatus.OPEN),
        open_margin=_positions_sum("margin", status=PositionStatus.OPEN),
        positions_realized=_positions_sum("realized_pnl"),
        last_snapshot_wallet=Subquery(last_wallet, output_field=MONEY),
    )


def wallet_of(account: Account) -> Decimal | None:
    """The same wallet as the equity snapshots (execution.services.equity): the paper ledger's
    wallet; a live account's exchange wallet, else the last one a snapshot knew; else unknown."""
    if account.is_paper_trading:
        return account.paper_wallet
    if account.live_wallet_balance is not None:
        return account.live_wallet_balance
    return getattr(account, "last_snapshot_wallet", None)


def realized_of(account: Account) -> Decimal:
    """Realized PnL net of fees and funding: the paper ledger's total (a paper reset clears it),
    or the sum over a live account's positions."""
    if account.is_paper_trading:
        return account.paper_realized_pnl
    return getattr(account, "positions_realized", Decimal("0"))


@admin.display(description="wallet")
def account_wallet(account: Account) -> str:
    return plain_decimal(wallet_of(account))


@admin.display(description="equity")
def account_equity(account: Account) -> str:
    wallet = wallet_of(account)
    return plain_decimal(None if wallet is None else wallet + getattr(account, "open_upnl", Decimal("0")))


@admin.display(description="open uPnL")
def account_upnl(account: Account) -> str:
    return plain_decimal(getattr(account, "open_upnl", None))


@admin.display(description="realized PnL")
def account_realized(account: Account) -> str:
    return plain_decimal(realized_of(account))


@admin.display(description="margin in use")
def account_margin(account: Account) -> str:
    return plain_decimal(getattr(account, "open_margin", None))


@admin.display(description="wallet as of")
def account_wallet_at(account: Account) -> str:
    if account.is_paper_trading:
        return "now (paper ledger)"
    if account.live_wallet_balance is None:
        return "exchange wallet not known yet: the last snapshot's" if wallet_of(account) is not None else "unknown"
    return plain_time(account.live_balance_at)


ACCOUNT_FIGURES: tuple[Any, ...] = (account_wallet, account_equity, account_upnl, account_realized, account_margin)

ACCOUNT_TIMES: list[Any] = [time_column("created_at", "created at"), time_column("updated_at", "updated at")]


admin.site.unregister(Account)


@admin.register(Account)
class AccountAdmin(AccountsAccountAdmin):
    """The account pages with the wallet, equity, realized PnL and margin in use (computed here:
    the accounts app cannot read positions) and the actions that call execution services."""

    actions = ["halt_trading", *AccountsAccountAdmin.actions, "reconcile_now"]

    class Media:
        css = {"all": [LIST_CSS]}

    list_display = [
        "name",
        "owner",
        "mode",
        "trading_state",
        *ACCOUNT_FIGURES,
        "max_leverage",
        "credentials",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Account]:
        return with_figures(super().get_queryset(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> Any:
        readonly: list[Any] = list(super().get_readonly_fields(request, obj))
        return readonly if obj is None else [*readonly, *ACCOUNT_FIGURES, account_wallet_at, *ACCOUNT_TIMES]

    def get_fieldsets(self, request: HttpRequest, obj: Account | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        figures: list[Any] = [*ACCOUNT_FIGURES, account_wallet_at]
        rest = [name for name in fieldsets[0][1]["fields"] if name not in [*figures, *ACCOUNT_TIMES]]
        return [("Balance", {"fields": figures}), (None, {"fields": rest}), ("Times", {"fields": ACCOUNT_TIMES})]

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
    age = Decimal(f"{timezone.now().timestamp() - obj.event_time_ms / 1000:.1f}")
    return f"{plain_decimal(age)} s"


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


@admin.register(ParityRecord)
class ParityRecordAdmin(ReadOnlyAdmin):
    """What paper would have done for each live fill (execution.services.parity); the report is
    `manage.py parity_report` and GET /api/accounts/{id}/parity/."""

    list_display = [
        "created_at",
        "account",
        "symbol",
        "kind",
        "side",
        decimal_column("quantity", "qty"),
        decimal_column("live_price", "live"),
        decimal_column("shadow_price", "paper"),
        decimal_column("slippage_bps", "slip bps"),
        decimal_column("fee_diff", "fee diff"),
        "trigger_delay_ms",
        "book_age_ms",
        "stale",
    ]
    list_filter = [ModeFilter, "kind", "stale", "symbol"]
    search_fields = ["symbol", "source_key", "account__name"]
    list_select_related = ["account"]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at", "seconds"]
