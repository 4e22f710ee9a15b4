from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.display import plain_decimal, plain_json, plain_time
from accounts.models import Account, TradingState

Column = Callable[[Any], str]


def decimal_column(field: str, label: str | None = None) -> Column:
    """A Decimal field as people read it ("65000.5", not "65000.5000000000"), sortable by the field."""
    return _column(field, label, plain_decimal)


def time_column(field: str, label: str | None = None) -> Column:
    """A timestamp to the second."""
    return _column(field, label, plain_time)


def json_column(field: str, label: str | None = None) -> Column:
    """A JSON field with its numbers in plain notation."""
    return _column(field, label, lambda value: plain_json(value) if value else "-")


def _column(field: str, label: str | None, show: Callable[[Any], str]) -> Column:
    def column(obj: Any) -> str:
        return show(getattr(obj, field))

    # Named after the field: a detail page then finds the model field's help text by this name.
    column.__name__ = field
    column.short_description = label or field.replace("_", " ")  # type: ignore[attr-defined]
    column.admin_order_field = field  # type: ignore[attr-defined]
    return column


def plain_column(field: models.Field[Any, Any]) -> Column | None:
    """The plain column of a Decimal, float, time or JSON model field; None for any other field."""
    label = str(field.verbose_name)
    if isinstance(field, models.DecimalField | models.FloatField):
        return decimal_column(field.name, label)
    if isinstance(field, models.DateTimeField):
        return time_column(field.name, label)
    if isinstance(field, models.JSONField):
        return json_column(field.name, label)
    return None


class PlainDecimalField(forms.DecimalField):
    """A Decimal input that shows its stored value without the storage zeros (10000, not
    10000.00000000); what is typed is parsed as before."""

    def prepare_value(self, value: Any) -> Any:
        return plain_decimal(value) if isinstance(value, Decimal) else value


class WriteOnlySecretField(forms.CharField):
    """A secret input that never shows the stored value. Blank keeps it, so only a typed value
    is a change (else saving an untouched page would rewrite and audit every secret)."""

    def __init__(self) -> None:
        super().__init__(required=False, widget=forms.PasswordInput(render_value=False), strip=True)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data and str(data).strip())


class AccountAdminForm(forms.ModelForm[Account]):
    """Secrets are write-only: the page shows only whether each is set; blank keeps it."""

    api_key = WriteOnlySecretField()
    api_secret = WriteOnlySecretField()
    signer_private_key = WriteOnlySecretField()

    class Meta:
        model = Account
        fields = ["owner", *services.EDITABLE_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in Account.SECRET_FIELDS:
            state = "set" if getattr(self.instance, name) else "not set"
            self.fields[name].help_text = f"Currently {state}. Leave blank to keep the current value."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned is None:  # ModelForm.clean returns cleaned_data; typed Optional for overriders
            cleaned = self.cleaned_data
        for name in Account.SECRET_FIELDS:
            if not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name)
        return cleaned


def secret_state(account: Account, name: str) -> str:
    return "set" if getattr(account, name) else "not set"


def scheme_secrets(account: Account) -> tuple[str, ...]:
    """The secrets the account's scheme uses (all of them while it has none)."""
    if account.api_version == "v1":
        return ("api_key", "api_secret")
    if account.api_version == "v3":
        return ("signer_private_key",)
    return Account.SECRET_FIELDS


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin[Account]):
    form = AccountAdminForm
    list_display = [
        "name",
        "owner",
        "mode",
        "trading_state",
        "max_leverage",
        "cooldown_seconds",
        decimal_column("paper_balance", "deposit"),
        "credentials",
    ]
    list_filter = ["is_paper_trading", "trading_state", "api_version"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    # halt_trading and reconcile_now call execution services: execution/admin.py adds them.
    actions = ["resume_trading"]
    formfield_overrides = {models.DecimalField: {"form_class": PlainDecimalField}}

    @admin.display(description="Mode")
    def mode(self, obj: Account) -> str:
        return obj.mode

    @admin.display(description="Credentials")
    def credentials(self, obj: Account) -> str:
        """Which secrets are set (never their values), short enough for the list."""
        if obj.is_paper_trading:
            return "n/a (paper)"
        states = ", ".join(f"{name}: {secret_state(obj, name)}" for name in scheme_secrets(obj))
        return f"{obj.api_version or 'no scheme'} ({states})"

    def save_model(self, request: HttpRequest, obj: Account, form: forms.ModelForm[Account], change: bool) -> None:
        # Writes go through the account services (validation + audit), not Model.save().
        data = {name: form.cleaned_data[name] for name in form.changed_data if name != "owner"}
        try:
            if change:
                saved = services.update_account(account=obj, **data)
            else:
                fields = {k: v for k, v in form.cleaned_data.items() if k not in ("owner", "name")}
                saved = services.create_account(owner=form.cleaned_data["owner"], name=obj.name, **fields)
        except ValidationError as exc:  # already validated by the form; a race is still possible
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            raise
        obj.pk = saved.pk

    @admin.action(description="Resume trading (active)")
    def resume_trading(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            services.set_trading_state(account=account, state=TradingState.ACTIVE, reason=f"admin {request.user}")
        self.message_user(request, f"Resumed {queryset.count()} account(s).")
