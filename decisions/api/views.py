"""The decisions endpoint: submit a decision (executed in the account's mode) and list them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from decisions.api.filters import DecisionFilter
from decisions.api.serializers import DecisionCreateSerializer, DecisionSerializer
from decisions.models import Decision, DecisionStatus
from decisions.selectors import decisions_of
from decisions.services import submit_decision


class DecisionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet[Decision]):
    serializer_class = DecisionSerializer
    filterset_class = DecisionFilter

    def get_queryset(self) -> Any:
        return decisions_of(self.request.user)

    def get_serializer_class(self) -> Any:
        # What a POST takes (also the browsable API's form), not what a decision became.
        return DecisionCreateSerializer if self.action == "create" else DecisionSerializer

    @extend_schema(
        request=DecisionCreateSerializer,
        responses={201: DecisionSerializer, 200: DecisionSerializer, 409: DecisionSerializer},
        description="Submit a decision; it is executed in the account's mode. 409 when the risk checks deny it "
        "(`code` gives the reason); 200 when the idempotency key was seen before.",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        submission = submit_decision(**serializer.validated_data)  # bad input: 400 from execution.api.errors
        body = dict(DecisionSerializer(submission.decision).data)
        if submission.decision.status == DecisionStatus.REJECTED:
            body["code"] = submission.decision.denial_code
            return Response(body, status=status.HTTP_409_CONFLICT)
        return Response(body, status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK)
