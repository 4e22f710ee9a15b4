from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.models import Account, TradingState


class AccountAdminForm(forms.ModelForm[Account]):
    """Secrets are write-only: the page shows only whether each is set; blank keeps it."""

    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), strip=True)
    api_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), strip=True)
    signer_private_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), strip=True)

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
        "paper_balance",
        "api_version",
        "credentials",
    ]
    list_filter = ["is_paper_trading", "trading_state", "api_version"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    # halt_trading and reconcile_now call execution services: execution/admin.py adds them.
    actions = ["resume_trading"]

    @admin.display(description="Mode")
    def mode(self, obj: Account) -> str:
        return obj.mode

    @admin.display(description="Credentials")
    def credentials(self, obj: Account) -> str:
        if obj.is_paper_trading:
            return "n/a (paper)"
        return ", ".join(f"{name}: {secret_state(obj, name)}" for name in Account.SECRET_FIELDS)

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
