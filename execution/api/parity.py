"""GET /api/accounts/{id}/parity/: how far paper is from live for one of the caller's accounts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.api import selectors
from execution.services.parity.report import parity_report, parse_since


def _bps(help_text: str = "") -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=28, decimal_places=4, allow_null=True, help_text=help_text)


class ParityGroupSerializer(serializers.Serializer[dict[str, Any]]):
    symbol = serializers.CharField()
    kind = serializers.CharField(help_text="entry, close, flip, take_profit, stop_loss or funding.")
    count = serializers.IntegerField()
    mean_bps = _bps("Mean slippage against paper's shadow; positive: live worse.")
    median_bps = _bps()
    p95_bps = _bps("Nearest-rank 95th percentile.")
    fee_diff = serializers.DecimalField(
        max_digits=28, decimal_places=10, help_text="Sum of live fee minus paper's fee (USDT)."
    )
    mean_trigger_delay_ms = serializers.IntegerField(
        allow_null=True, help_text="TP/SL: paper's trigger time minus the exchange's fill time (positive: paper later)."
    )


class ParityBucketSerializer(serializers.Serializer[dict[str, Any]]):
    low_bps = _bps("Inclusive; null: open below.")
    high_bps = _bps("Exclusive; null: open above.")
    count = serializers.IntegerField()


class ParityCalibrationSerializer(serializers.Serializer[dict[str, Any]]):
    fee_rate = serializers.DecimalField(
        max_digits=28, decimal_places=8, allow_null=True, help_text="Live fees / live notional over the period."
    )
    slippage_margin_bps = _bps("The margin paper's book walk would need (median market slippage, at least 0).")
    basis = serializers.CharField(help_text="How the suggestion was made; settings are never changed.")


class ParityDecisionSerializer(serializers.Serializer[dict[str, Any]]):
    at = serializers.DateTimeField()
    decision = serializers.IntegerField(allow_null=True)
    shadow_decision = serializers.IntegerField(allow_null=True)
    symbol = serializers.CharField()
    action = serializers.CharField()
    live_status = serializers.CharField()
    shadow_status = serializers.CharField()
    live_reason = serializers.CharField()
    shadow_reason = serializers.CharField()


class ParityReportSerializer(serializers.Serializer[dict[str, Any]]):
    account = serializers.IntegerField()
    since = serializers.DateTimeField(allow_null=True)
    groups = ParityGroupSerializer(many=True)
    histogram = ParityBucketSerializer(
        many=True, help_text="Slippage (bps) of the market fills (entry, close, flip) with a shadow price."
    )
    calibration = ParityCalibrationSerializer()
    decisions = ParityDecisionSerializer(
        many=True, help_text="Decisions its shadow paper account and this account did not agree on."
    )


SINCE = OpenApiParameter(
    "since", str, description="Only records since then: 12h, 1d, 7d (that long ago) or an ISO 8601 time."
)


class AccountParityView(APIView):
    """Owner-scoped: another owner's account is 404."""

    @extend_schema(operation_id="accounts_parity", parameters=[SINCE], responses=ParityReportSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """Paper<->live parity of the account's live fills, by symbol and kind, with a histogram of
        slippage, the suggested calibration and the decisions its shadow pair disagreed on."""
        if not selectors.accounts_of(request.user).filter(pk=pk).exists():
            raise Http404
        since = parse_since(request.query_params.get("since"))
        report = parity_report(account_id=pk, since=since)
        return Response(ParityReportSerializer(asdict(report)).data)
