"""The list endpoints' filters. Every choice they offer is scoped to the caller: the `account`
filter's queryset is the requesting owner's accounts, so the browsable API's filter form lists
no one else's, and another owner's account id is refused exactly like an id that does not exist
(400 "Select a valid choice"), so ids cannot be probed."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework.request import Request

from accounts.models import Account
from execution.api import selectors
from execution.models import PendingOrder, Position, Trade


def owned_accounts(request: Request | None) -> QuerySet[Account]:
    """The accounts a form or filter may offer: the caller's own (none without a request)."""
    if request is None:
        return Account.objects.none()
    return selectors.accounts_of(request.user).order_by("pk")


class OwnedAccountFilterSet(filters.FilterSet):  # type: ignore[misc]  # django-filter ships no types
    account = filters.ModelChoiceFilter(
        queryset=owned_accounts,
        help_text="One of your accounts (id); another owner's id is refused like an unknown one.",
    )


class ModeFilterSet(OwnedAccountFilterSet):
    mode = filters.ChoiceFilter(choices=[("paper", "paper"), ("live", "live")], method="filter_mode")

    def filter_mode(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(account__is_paper_trading=value == "paper")


class PositionFilter(ModeFilterSet):
    class Meta:
        model = Position
        fields = ["account", "symbol", "status", "side"]


class TradeFilter(ModeFilterSet):
    class Meta:
        model = Trade
        fields = ["account", "symbol", "status", "reason", "side"]


class PendingOrderFilter(ModeFilterSet):
    class Meta:
        model = PendingOrder
        fields = ["account", "symbol", "status", "kind"]
