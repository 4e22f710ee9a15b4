"""Thin DRF views: parse, call one selector or service, format. Owner-scoped (others' rows are 404)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from execution.api import selectors
from execution.api.filters import PendingOrderFilter, PositionFilter, TradeFilter
from execution.api.serializers import (
    AccountSerializer,
    AccountStatusSerializer,
    PendingOrderSerializer,
    PositionSerializer,
    TradeSerializer,
)
from execution.models import PendingOrder, Position, Trade


class AccountViewSet(viewsets.ReadOnlyModelViewSet[Account]):
    serializer_class = AccountSerializer

    def get_queryset(self) -> Any:
        return selectors.accounts_of(self.request.user).order_by("pk")

    @extend_schema(responses=AccountStatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str | None = None) -> Response:
        return Response(AccountStatusSerializer(selectors.account_status(self.get_object())).data)


class PositionViewSet(viewsets.ReadOnlyModelViewSet[Position]):
    serializer_class = PositionSerializer
    filterset_class = PositionFilter

    def get_queryset(self) -> Any:
        return selectors.positions_of(self.request.user)


class TradeViewSet(viewsets.ReadOnlyModelViewSet[Trade]):
    serializer_class = TradeSerializer
    filterset_class = TradeFilter

    def get_queryset(self) -> Any:
        return selectors.trades_of(self.request.user)


class PendingOrderViewSet(viewsets.ReadOnlyModelViewSet[PendingOrder]):
    serializer_class = PendingOrderSerializer
    filterset_class = PendingOrderFilter

    def get_queryset(self) -> Any:
        return selectors.pending_orders_of(self.request.user)
