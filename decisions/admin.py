from django.contrib import admin

from decisions.models import Decision
from execution.admin import ModeFilter, ReadOnlyAdmin, account_mode, decimal_column


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        account_mode,
        "symbol",
        "action",
        decimal_column("quantity"),
        "leverage",
        decimal_column("take_profit"),
        decimal_column("stop_loss"),
        "status",
        "denial_code",
        "reason",
        "trade",
    ]
    list_filter = [ModeFilter, "status", "denial_code", "action", "symbol", "account"]
    search_fields = ["symbol", "idempotency_key", "account__name", "reason"]
    list_select_related = ["account", "trade"]
