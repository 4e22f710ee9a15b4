"""The decisions list's filters: `account` offers and accepts only the caller's accounts."""

from __future__ import annotations

from decisions.models import Decision
from execution.api.filters import OwnedAccountFilterSet


class DecisionFilter(OwnedAccountFilterSet):
    class Meta:
        model = Decision
        fields = ["account", "symbol", "status", "action"]
