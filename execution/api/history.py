"""History endpoints: equity (downsampled in the database), daily PnL, the audit feed, funding
payments, reconciliation runs with their items, and alerts. Lists are cursor-paginated (newest
first, `cursor` and `limit`), owner-scoped, filterable by `account` and by time (`from`, `to`:
ISO 8601; without an offset, UTC), with a constant number of queries per page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from accounts.models import ExecutionEvent
from execution.api import selectors
from execution.api.filters import OwnedAccountFilterSet
from execution.models import Alert, EquitySnapshot, FundingPayment, ReconciliationItem, ReconciliationRun

TIME_PARAMETERS = [
    OpenApiParameter(
        "from", OpenApiTypes.DATETIME, description="From this time on (ISO 8601; no offset: UTC). Bad: 400."
    ),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="Before this time (ISO 8601; no offset: UTC). Bad: 400."),
]


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class OldestFirstByTimeCursorPagination(NewestFirstCursorPagination):
    ordering = "taken_at"


def time_range(request: Request) -> tuple[datetime | None, datetime | None]:
    """`from` and `to` of the query string as aware datetimes; 400 naming the parameter if bad."""
    bounds: dict[str, datetime | None] = {}
    for name in ("from", "to"):
        raw = request.query_params.get(name)
        if not raw:
            bounds[name] = None
            continue
        try:
            value = parse_datetime(raw)
            if value is None:
                raise ValueError(raw)
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            bounds[name] = value.astimezone(UTC)
        except (ValueError, OverflowError):
            raise exceptions.ValidationError(
                {name: ["An ISO 8601 date and time, like 2026-11-27T16:00:00Z."]}
            ) from None
    start, end = bounds["from"], bounds["to"]
    if start is not None and end is not None and start > end:
        raise exceptions.ValidationError({"to": ["Must not be before `from`."]})
    return start, end


class TimeRangeMixin:
    time_field = "created_at"

    def in_time_range(self, queryset: Any) -> Any:
        start, end = time_range(self.request)  # type: ignore[attr-defined]  # a view's request
        if start is not None:
            queryset = queryset.filter(**{f"{self.time_field}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.time_field}__lt": end})
        return queryset


# --------------------------------------------------------------------------- serializers


class EquitySnapshotSerializer(serializers.ModelSerializer[EquitySnapshot]):
    class Meta:
        model = EquitySnapshot
        fields = ["taken_at", "wallet", "unrealized_pnl", "equity", "margin_in_use"]
        read_only_fields = fields


class DailyPnlSerializer(serializers.Serializer[dict[str, Any]]):
    day = serializers.DateField(help_text="The UTC day.")
    realized_pnl = serializers.DecimalField(max_digits=28, decimal_places=10, help_text="Gross, before fees.")
    fees = serializers.DecimalField(max_digits=28, decimal_places=10)
    funding = serializers.DecimalField(max_digits=28, decimal_places=10, help_text="Paid: positive.")
    net = serializers.DecimalField(max_digits=28, decimal_places=10, help_text="realized_pnl - fees - funding.")
    trades = serializers.IntegerField()


class EventSerializer(serializers.ModelSerializer[ExecutionEvent]):
    class Meta:
        model = ExecutionEvent
        fields = [
            "id",
            "account",
            "kind",
            "subject_type",
            "subject_id",
            "from_status",
            "to_status",
            "message",
            "data",
            "created_at",
        ]
        read_only_fields = fields


class FundingPaymentSerializer(serializers.ModelSerializer[FundingPayment]):
    class Meta:
        model = FundingPayment
        fields = ["id", "account", "position", "symbol", "funding_time", "rate", "mark_price", "quantity", "amount"]
        read_only_fields = fields


class ReconciliationItemSerializer(serializers.ModelSerializer[ReconciliationItem]):
    class Meta:
        model = ReconciliationItem
        fields = ["id", "kind", "symbol", "local", "remote", "action", "outcome", "message"]
        read_only_fields = fields


class ReconciliationRunSerializer(serializers.ModelSerializer[ReconciliationRun]):
    items = ReconciliationItemSerializer(many=True, read_only=True)

    class Meta:
        model = ReconciliationRun
        fields = [
            "id",
            "account",
            "dry_run",
            "status",
            "differences",
            "http_calls",
            "message",
            "started_at",
            "finished_at",
            "items",
        ]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer[Alert]):
    class Meta:
        model = Alert
        fields = ["id", "account", "kind", "message", "created_at", "delivered_at", "attempts"]
        read_only_fields = fields


# --------------------------------------------------------------------------- filters


class EventFilter(OwnedAccountFilterSet):
    kind = filters.CharFilter(help_text="An event kind, like account.trading_state or trade.filled.")

    class Meta:
        model = ExecutionEvent
        fields = ["account", "kind"]


class FundingPaymentFilter(OwnedAccountFilterSet):
    class Meta:
        model = FundingPayment
        fields = ["account", "symbol"]


class ReconciliationRunFilter(OwnedAccountFilterSet):
    class Meta:
        model = ReconciliationRun
        fields = ["account", "status"]


class AlertFilter(OwnedAccountFilterSet):
    class Meta:
        model = Alert
        fields = ["account", "kind"]


# --------------------------------------------------------------------------- views


@extend_schema_view(list=extend_schema(parameters=TIME_PARAMETERS, description="The audit feed, newest first."))
class EventViewSet(TimeRangeMixin, viewsets.ReadOnlyModelViewSet[ExecutionEvent]):
    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self) -> Any:
        return self.in_time_range(selectors.events_of(self.request.user))


@extend_schema_view(list=extend_schema(parameters=TIME_PARAMETERS, description="Funding settlements, newest first."))
class FundingPaymentViewSet(TimeRangeMixin, viewsets.ReadOnlyModelViewSet[FundingPayment]):
    serializer_class = FundingPaymentSerializer
    filterset_class = FundingPaymentFilter
    pagination_class = NewestFirstCursorPagination
    time_field = "funding_time"

    def get_queryset(self) -> Any:
        return self.in_time_range(selectors.funding_payments_of(self.request.user))


@extend_schema_view(
    list=extend_schema(parameters=TIME_PARAMETERS, description="Reconciliation runs with their items, newest first.")
)
class ReconciliationRunViewSet(TimeRangeMixin, viewsets.ReadOnlyModelViewSet[ReconciliationRun]):
    serializer_class = ReconciliationRunSerializer
    filterset_class = ReconciliationRunFilter
    pagination_class = NewestFirstCursorPagination
    time_field = "started_at"

    def get_queryset(self) -> Any:
        return self.in_time_range(selectors.reconciliation_runs_of(self.request.user))


@extend_schema_view(list=extend_schema(parameters=TIME_PARAMETERS, description="Alerts, newest first."))
class AlertViewSet(TimeRangeMixin, viewsets.ReadOnlyModelViewSet[Alert]):
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self) -> Any:
        return self.in_time_range(selectors.alerts_of(self.request.user))


def interval_of(request: Request, choices: dict[str, str], default: str) -> str:
    interval = request.query_params.get("interval") or default
    if interval not in choices:
        raise exceptions.ValidationError({"interval": [f"One of {', '.join(choices)}."]})
    return interval


class EquityPageSerializer(serializers.Serializer[dict[str, Any]]):
    next = serializers.URLField(allow_null=True, help_text="The next page (a `cursor` link), or null.")
    previous = serializers.URLField(allow_null=True)
    results = EquitySnapshotSerializer(many=True)


EQUITY_PARAMETERS = [
    OpenApiParameter(
        "interval",
        str,
        enum=["1m", "1h", "1d"],
        description="Bucket size: one snapshot (the last) per bucket, grouped in the database. Default 1h.",
    ),
    *TIME_PARAMETERS,
    OpenApiParameter("cursor", str, description="The page, from `next` or `previous`. Unknown: 404."),
    OpenApiParameter("limit", int, description="Snapshots per page, up to 1000 (default 100)."),
]
PNL_PARAMETERS = [
    OpenApiParameter("interval", str, enum=["day"], description="Only `day` (UTC days)."),
    *TIME_PARAMETERS,
]
