"""Thin DRF views: parse, call one selector or service, format. Owner-scoped (others' rows are 404).

Each control (a write) has its own throttle scope (`throttle_scopes`, rates in
settings.API_THROTTLE_RATES)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from accounts import services as account_services
from accounts.models import Account
from execution.api import selectors
from execution.api.control_serializers import (
    AccountCreateSerializer,
    CloseAllResultSerializer,
    CloseResultSerializer,
    CloseSerializer,
    CredentialsSerializer,
    HaltResultSerializer,
    ProtectionResultSerializer,
    ProtectionSerializer,
    ReasonSerializer,
    ResetSerializer,
    ThrottledSerializer,
)
from execution.api.filters import PendingOrderFilter, PositionFilter, TradeFilter
from execution.api.history import (
    EQUITY_PARAMETERS,
    PNL_PARAMETERS,
    DailyPnlSerializer,
    EquityPageSerializer,
    EquitySnapshotSerializer,
    OldestFirstByTimeCursorPagination,
    interval_of,
    time_range,
)
from execution.api.serializers import (
    AccountSerializer,
    AccountStatusSerializer,
    ErrorSerializer,
    PendingOrderSerializer,
    PositionSerializer,
    TradeSerializer,
)
from execution.api.throttles import ControlThrottle
from execution.models import PendingOrder, Position, Trade
from execution.services import controls
from execution.services.controls import KEEP
from execution.services.equity import INTERVALS, equity_history


def _conflict(codes: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, f"Refused: `code` {codes}; nothing was done.")


BAD_GATEWAY = OpenApiResponse(ErrorSerializer, "The venue could not do it (`code` says why).")
THROTTLED = OpenApiResponse(ThrottledSerializer, "Too many requests of this control: retry after `Retry-After`.")


class ScopedThrottles:
    """A viewset's writes each get their own throttle scope; its reads none."""

    throttle_scopes: dict[str, str] = {}

    def get_throttles(self) -> list[BaseThrottle]:
        scope = self.throttle_scopes.get(getattr(self, "action", None) or "")
        if scope is None:
            return []
        self.throttle_scope = scope
        return [ControlThrottle()]


class AccountViewSet(ScopedThrottles, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet[Account]):
    serializer_class = AccountSerializer
    throttle_scopes = {
        "create": "account-create",
        "reset": "account-reset",
        "halt": "account-halt",
        "resume": "account-resume",
        "reduce_only": "account-reduce-only",
        "close_all": "account-close-all",
        "credentials": "account-credentials",
        "switch_to_live": "account-switch-to-live",
    }

    def get_queryset(self) -> Any:
        return selectors.accounts_of(self.request.user).order_by("pk")

    def get_serializer_class(self) -> Any:
        return AccountCreateSerializer if self.action == "create" else AccountSerializer

    @extend_schema(request=AccountCreateSerializer, responses={201: AccountSerializer, 429: THROTTLED})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a paper account with a starting balance (`paper_balance`)."""
        serializer = AccountCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = account_services.create_account(
            owner=request.user,  # type: ignore[arg-type]
            is_paper_trading=True,
            **serializer.validated_data,
        )
        return Response(AccountSerializer(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=AccountStatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str | None = None) -> Response:
        return Response(AccountStatusSerializer(selectors.account_status(self.get_object())).data)

    @extend_schema(
        request=ReasonSerializer,
        responses={200: HaltResultSerializer, 502: BAD_GATEWAY, 429: THROTTLED},
        description="Halt the account (no new orders) and run the kill switch: live entry orders are cancelled, "
        "protective stops kept.",
    )
    @action(detail=True, methods=["post"])
    def halt(self, request: Request, pk: str | None = None) -> Response:
        account = self.get_object()
        reason = _reason(request)
        report = controls.halt(account=account, reason=reason)
        body = {
            "trading_state": "halted",
            "cancelled": report.cancelled,
            "kept": report.kept,
            "failures": report.errors,
        }
        return Response(HaltResultSerializer(body).data)

    @extend_schema(request=ReasonSerializer, responses={200: AccountSerializer, 429: THROTTLED})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Back to `active`: new orders are allowed again."""
        account = controls.resume(account=self.get_object(), reason=_reason(request))
        return Response(AccountSerializer(account).data)

    @extend_schema(request=ReasonSerializer, responses={200: AccountSerializer, 429: THROTTLED})
    @action(detail=True, methods=["post"], url_path="reduce-only")
    def reduce_only(self, request: Request, pk: str | None = None) -> Response:
        """To `reducing`: only orders that reduce open positions are allowed."""
        account = controls.reduce_only(account=self.get_object(), reason=_reason(request))
        return Response(AccountSerializer(account).data)

    @extend_schema(request=None, responses={200: CloseAllResultSerializer, 429: THROTTLED})
    @action(detail=True, methods=["post"], url_path="close-all")
    def close_all(self, request: Request, pk: str | None = None) -> Response:
        """Close every open position at market; what could not be closed is listed under `failures`."""
        report = controls.close_all_positions(account=self.get_object())
        return Response(CloseAllResultSerializer({"closed": report.closed, "failures": report.errors}).data)

    @extend_schema(
        request=ResetSerializer,
        responses={200: AccountSerializer, 409: _conflict("PAPER_ONLY or RESET_INCOMPLETE"), 429: THROTTLED},
    )
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, pk: str | None = None) -> Response:
        """Paper only: close every position, cancel the pending legs, and reset the wallet to its deposit
        (or to `paper_balance`) with nothing realized."""
        account = self.get_object()
        serializer = ResetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = controls.reset_paper_account(
            account=account, paper_balance=serializer.validated_data.get("paper_balance")
        )
        return Response(AccountSerializer(account).data)

    @extend_schema(request=CredentialsSerializer, responses={200: AccountSerializer, 429: THROTTLED})
    @action(detail=True, methods=["post"])
    def credentials(self, request: Request, pk: str | None = None) -> Response:
        """Set or rotate the live credentials (v1: `api_key`, `api_secret`; v3: `wallet_address`,
        `signer_address`, `signer_private_key`). Write-only: the answer says only `set` / `not set`."""
        account = self.get_object()
        serializer = CredentialsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        account = account_services.set_credentials(account=account, **data)
        return Response(AccountSerializer(account).data)

    @extend_schema(request=None, responses={200: AccountSerializer, 429: THROTTLED})
    @action(detail=True, methods=["post"], url_path="switch-to-live", permission_classes=[permissions.IsAdminUser])
    def switch_to_live(self, request: Request, pk: str | None = None) -> Response:
        """Staff only: switch a paper account to live (it needs valid credentials and no open position)."""
        account = self.get_object()
        account = account_services.switch_to_live(
            account=account,
            by=request.user,  # type: ignore[arg-type]
            open_positions=selectors.open_position_count(account),
        )
        return Response(AccountSerializer(account).data)

    @extend_schema(parameters=EQUITY_PARAMETERS, responses=EquityPageSerializer)
    @action(detail=True, methods=["get"])
    def equity(self, request: Request, pk: str | None = None) -> Response:
        """The account's equity over time (a snapshot a minute, written by beat), downsampled to
        `interval`: the last snapshot of each bucket, oldest first."""
        account = self.get_object()
        start, end = time_range(request)
        interval = interval_of(request, INTERVALS, "1h")
        paginator = OldestFirstByTimeCursorPagination()
        page = paginator.paginate_queryset(
            equity_history(account=account, start=start, end=end, interval=interval), request, view=self
        )
        return paginator.get_paginated_response(EquitySnapshotSerializer(page, many=True).data)

    @extend_schema(parameters=PNL_PARAMETERS, responses=DailyPnlSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def pnl(self, request: Request, pk: str | None = None) -> Response:
        """Realized PnL, fees and funding per UTC day, oldest first (days without any left out)."""
        account = self.get_object()
        start, end = time_range(request)
        interval_of(request, {"day": "day"}, "day")
        days = selectors.daily_pnl(account=account, start=start, end=end)
        return Response(DailyPnlSerializer(days, many=True).data)  # type: ignore[arg-type]  # many=True: a list


def _reason(request: Request) -> str:
    serializer = ReasonSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    reason: str = serializer.validated_data["reason"]
    return reason


class PositionViewSet(ScopedThrottles, viewsets.ReadOnlyModelViewSet[Position]):
    serializer_class = PositionSerializer
    filterset_class = PositionFilter
    throttle_scopes = {"close": "position-close", "protection": "position-protection"}

    def get_queryset(self) -> Any:
        return selectors.positions_of(self.request.user)

    @extend_schema(
        request=CloseSerializer,
        responses={
            200: CloseResultSerializer,
            409: _conflict("NO_POSITION (not open), INVALID_QUANTITY, or another risk code"),
            502: BAD_GATEWAY,
            429: THROTTLED,
        },
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        """Close the position at market: whole, or `quantity` of it (reduce-only)."""
        position = self.get_object()
        serializer = CloseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = controls.close_position(
            account=position.account, position=position, quantity=serializer.validated_data.get("quantity")
        )
        return Response(CloseResultSerializer({"trade": result.trade, "position": result.position}).data)

    @extend_schema(
        request=ProtectionSerializer,
        responses={
            200: ProtectionResultSerializer,
            409: _conflict(
                "NO_POSITION (not open) or INVALID_PROTECTION (wrong side of the mark, or at or beyond "
                "the liquidation price)"
            ),
            502: OpenApiResponse(ErrorSerializer, "PROTECTION_FAILED: the venue refused a new leg; the old legs stay."),
            429: THROTTLED,
        },
    )
    @action(detail=True, methods=["patch"])
    def protection(self, request: Request, pk: str | None = None) -> Response:
        """Amend the position's take-profit and stop-loss (null removes a leg, absent keeps it). Paper
        replaces its legs in one transaction; live places the new legs before cancelling the old ones, so
        a stop rests at all times."""
        position = self.get_object()
        serializer = ProtectionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        controls.amend_protection(
            account=position.account,
            position=position,
            take_profit=data.get("take_profit", KEEP),
            stop_loss=data.get("stop_loss", KEEP),
            working_type=data.get("working_type"),
        )
        position.refresh_from_db()
        legs = selectors.active_legs(position)
        return Response(ProtectionResultSerializer({"position": position, "pending_orders": legs}).data)


class TradeViewSet(viewsets.ReadOnlyModelViewSet[Trade]):
    serializer_class = TradeSerializer
    filterset_class = TradeFilter

    def get_queryset(self) -> Any:
        return selectors.trades_of(self.request.user)


class PendingOrderViewSet(ScopedThrottles, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet[PendingOrder]):
    serializer_class = PendingOrderSerializer
    filterset_class = PendingOrderFilter
    throttle_scopes = {"destroy": "pending-order-cancel"}

    def get_queryset(self) -> Any:
        return selectors.pending_orders_of(self.request.user)

    @extend_schema(
        responses={
            200: PendingOrderSerializer,
            409: _conflict("LEG_NOT_ACTIVE (already filled or cancelled)"),
            429: THROTTLED,
        }
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Cancel one protective leg (here, then at the venue). Answers the cancelled leg."""
        order = self.get_object()
        leg = controls.cancel_pending_order(account=order.account, order=order)
        return Response(PendingOrderSerializer(leg).data)
