"""The decisions endpoint: submit a decision (executed in the account's mode) and list them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from decisions.api.filters import DecisionFilter
from decisions.api.serializers import DecisionCreateSerializer, DecisionOutcomeSerializer, DecisionSerializer
from decisions.models import Decision, DecisionStatus
from decisions.selectors import decisions_of
from decisions.services import submit_decision
from execution.api.serializers import ErrorSerializer

EXECUTION_FAILED = "EXECUTION_FAILED"
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"

CREATE_DESCRIPTION = """Submit a decision; it is executed in the account's mode (paper or live).

The status code follows what became of the decision, also when its idempotency key is sent again:

- **201** executed or skipped (hold), new (an entry whose TP/SL the venue refused is `executed` with `reason`
  PROTECTION_FAILED: it did execute; do not retry it); **200** the same idempotency key and payload seen before:
  the first decision, not executed again (while the first is still executing, its `status` is `received`).
- **409** with the decision and `code`: denied (`status` `rejected`; `code` = `denial_code`: a risk code,
  NO_POSITION for a close with nothing open, or INVALID_INPUT).
- **409** `{"detail", "code": "IDEMPOTENCY_MISMATCH"}`: the key was used with a different payload; nothing was done.
- **502** with the decision and `code` EXECUTION_FAILED: recorded as `failed` because the venue could not
  execute it (unreachable, refused, or found never executed); `reason` says what failed. Send a new key to try
  again.
- **202** with the decision and `code` OUTCOME_UNKNOWN: the venue's answer was ambiguous (`status`
  `unknown`); the order is never resent: reconciliation asks the venue by its client order id and the
  decision then becomes `executed` or `failed` (poll it with GET).
- **400** field messages: bad input, nothing recorded.

Input is parsed strictly: numbers are JSON numbers or strings of ASCII digits (no Unicode digits,
underscores or exponents in strings); ids and leverage are integers (no 1.5, no true); `symbol` and
`idempotency_key` are JSON strings taken as they are; `close` and `hold` refuse `quantity`, `leverage`,
`take_profit` and `stop_loss` (absent or null only) instead of ignoring them."""


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
        responses={
            201: OpenApiResponse(DecisionSerializer, "Executed, or skipped (hold): a new decision."),
            200: OpenApiResponse(DecisionSerializer, "A known idempotency key with the same payload."),
            409: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="DecisionConflict",
                    serializers=[DecisionOutcomeSerializer, ErrorSerializer],
                    resource_type_field_name=None,
                ),
                "Rejected (the decision, with `code`), or IDEMPOTENCY_MISMATCH (`detail`, `code`).",
            ),
            202: OpenApiResponse(
                DecisionOutcomeSerializer, "Outcome unknown at the venue: the decision, `code` OUTCOME_UNKNOWN."
            ),
            502: OpenApiResponse(
                DecisionOutcomeSerializer, "Failed at the venue: the decision, `code` EXECUTION_FAILED."
            ),
        },
        description=CREATE_DESCRIPTION,
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        submission = submit_decision(**serializer.validated_data)  # bad input: 400 from execution.api.errors
        decision = submission.decision
        body = dict(DecisionSerializer(decision).data)
        if decision.status == DecisionStatus.REJECTED:
            body["code"] = decision.denial_code
            return Response(body, status=status.HTTP_409_CONFLICT)
        if decision.status == DecisionStatus.FAILED:
            body["code"] = EXECUTION_FAILED
            return Response(body, status=status.HTTP_502_BAD_GATEWAY)
        if decision.status == DecisionStatus.UNKNOWN:
            body["code"] = OUTCOME_UNKNOWN
            return Response(body, status=status.HTTP_202_ACCEPTED)
        return Response(body, status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK)
