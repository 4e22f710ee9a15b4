from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from decisions.models import Decision
from execution.admin import ModeFilter, ReadOnlyAdmin, decimal_column, short_text


def trade_link(obj: Decision) -> str:
    """The decision's trade by its number (a trade's title, client id included, is as long as a row)."""
    if obj.trade_id is None:
        return "-"
    url = reverse("admin:execution_trade_change", args=[obj.trade_id])
    return format_html('<a href="{}">#{}</a>', url, obj.trade_id)


trade_link.short_description = "trade"  # type: ignore[attr-defined]
trade_link.admin_order_field = "trade"  # type: ignore[attr-defined]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        "symbol",
        "action",
        decimal_column("quantity"),
        "leverage",
        decimal_column("take_profit", "TP"),
        decimal_column("stop_loss", "SL"),
        "status",
        short_text("reason", 32),
        trade_link,
    ]
    list_filter = [ModeFilter, "status", "denial_code", "action", "symbol", "account"]
    search_fields = ["symbol", "idempotency_key", "account__name", "reason"]
    list_select_related = ["account"]
