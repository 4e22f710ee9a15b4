"""Serializer fields shared by the API's input serializers."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from accounts.models import Account
from execution.api.filters import owned_accounts


class OwnedAccountField(serializers.PrimaryKeyRelatedField[Account]):
    """An account id of the caller's: the browsable API's form offers only those, and another
    owner's id is refused like an unknown one."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("queryset", Account.objects.none())  # replaced per request by get_queryset
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Account]:
        return owned_accounts(self.context.get("request"))
