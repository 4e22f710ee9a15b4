"""The API fuzzed from its own OpenAPI schema (schemathesis), in-process: Django's WSGI app in the
test's transaction, market data from the `market` fixture, no network.

Every operation of /api/schema/ gets EXAMPLES positive and EXAMPLES negative cases (schema-valid
and schema-invalid input), from a fixed seed. Each response must:

- not be a server error: no 500 ever; a 502 only as the documented, mapped answer of a decision
  the venue could not execute (the live account's signed endpoints are not served here, so its
  orders fail like an unreachable exchange would): JSON with a `code`;
- conform to the schema: a documented status code, content type and body;
- when it refuses input (4xx) write nothing: no Decision, Trade, Position or PendingOrder row.
  The one 4xx that writes is a 409 denial, which records its decision as `rejected` (one
  Decision row, no trade; none when it replays a known key); an IDEMPOTENCY_MISMATCH 409 writes
  nothing.

Generated ids are mostly unknown (404/400); to reach real objects too, an even integer id in a
path or an `account` filter is replaced by one of the caller's real ids, a body's integer
`account` always is (paper or live), and some symbols and idempotency keys are made to recur.
Named scenarios first send each outcome the POST documents once (201, 200, 409 x3, 502, 400).

schemathesis's negative_data_rejection check is not run: an empty filter value (`?action=`)
means "no filter", as the browsable API's filter form sends it, and is accepted on purpose.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, seed, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ExecutionEvent
from decisions.models import Decision, DecisionStatus
from decisions.services import submit_decision
from execution.models import Alert, FundingPayment, PendingOrder, Position, ReconciliationRun, Trade
from tests.factories import LiveV1AccountFactory, PaperAccountFactory, UserFactory

EXAMPLES = 25  # per operation and mode; POST /api/decisions/ gets POST_EXAMPLES
POST_EXAMPLES = 100  # 32 x 2 x 25 + 2 x 100 = 1800 requests at most
OPERATIONS = 34  # every operation of the schema (the controls, lifecycle and history endpoints too; parity)
SEED = 20251127
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
MODELS = {"decisions": Decision, "trades": Trade, "positions": Position, "pending-orders": PendingOrder}
# Resources whose ids are steered but whose rows a refusal could not write anyway.
READ_ONLY = {
    "events": ExecutionEvent,
    "alerts": Alert,
    "funding-payments": FundingPayment,
    "reconciliation-runs": ReconciliationRun,
}


@pytest.fixture
def wsgi_app():
    """Django's WSGI app, served in the test's transaction: like Django's test client, requests
    do not close the connection (close_old_connections would end the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, market):
    """The caller's paper account with an open, protected position, a live account with a
    reconciliation run, an alert and a funding payment, and another owner's account with a
    decision (never to be seen). The controls are not throttled here (their 429 is tested apart)."""
    owner = UserFactory()
    paper = PaperAccountFactory(owner=owner)
    live = LiveV1AccountFactory(owner=owner)
    submit_decision(
        account=paper,
        symbol="BTCUSDT",
        action="open_long",
        quantity=Decimal("0.01"),
        leverage=5,
        take_profit=Decimal("90000"),
        stop_loss=Decimal("60000"),
        idempotency_key="fuzz-open",
    )
    submit_decision(account=PaperAccountFactory(owner=UserFactory()), symbol="BTCUSDT", action="hold")
    position = Position.objects.get(account=paper)
    FundingPayment.objects.create(
        account=paper,
        position=position,
        symbol="BTCUSDT",
        funding_time=position.opened_at,
        rate=Decimal("0.0001"),
        mark_price=Decimal("65000"),
        quantity=position.quantity,
        amount=Decimal("0.065"),
    )
    ReconciliationRun.objects.create(account=live)
    Alert.objects.create(account=paper, kind="liquidation", message="fuzz", cause="fuzz")
    token = Token.objects.create(user=owner)
    ids = {"accounts": [paper.pk, live.pk]}
    for name, model in {**MODELS, **READ_ONLY}.items():
        ids[name] = list(model.objects.filter(account__owner=owner).values_list("pk", flat=True))
    assert all(ids.values()), ids
    return {"headers": {"Authorization": f"Token {token.key}"}, "ids": ids}


def rows() -> dict[str, int]:
    return {name: model.objects.count() for name, model in MODELS.items()}


def _real_id(value: Any, choices: list[int]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value % 2 == 0:
        return choices[(value // 2) % len(choices)]
    return value


def steer(case: Any, ids: dict[str, list[int]]) -> None:
    """Point some generated ids at the caller's real objects (see the module's docstring)."""
    resource = case.operation.path.split("/")[2]
    if isinstance(case.path_parameters, dict) and "id" in case.path_parameters:
        case.path_parameters["id"] = _real_id(case.path_parameters["id"], ids[resource])
    if isinstance(case.query, dict) and "account" in case.query:
        case.query["account"] = _real_id(case.query["account"], ids["accounts"])
    if isinstance(case.body, dict):
        account = case.body.get("account")
        if isinstance(account, int) and not isinstance(account, bool):  # paper or live, as it falls
            case.body["account"] = ids["accounts"][account % 2]
        symbol = case.body.get("symbol")
        if isinstance(symbol, str) and len(symbol) % 2 == 0:
            case.body["symbol"] = "BTCUSDT"  # a listed symbol: the decision reaches the venue
        key = case.body.get("idempotency_key")
        if isinstance(key, str) and len(key) % 2 == 0:
            case.body["idempotency_key"] = f"fuzz-{len(key) % 3}"  # keys recur: replays and mismatches


def check_writes(response: Any, before: dict[str, int], after: dict[str, int]) -> None:
    status = response.status_code
    if not 400 <= status < 500:
        return
    if status == 409 and response.json().get("status") == DecisionStatus.REJECTED:
        # A denial records its decision (one row), or replays a recorded one (none).
        assert after["decisions"] - before["decisions"] in (0, 1), (before, after)
        assert {**after, "decisions": 0} == {**before, "decisions": 0}, (before, after)
        assert Decision.objects.filter(status=DecisionStatus.REJECTED, pk=response.json()["id"]).exists()
    else:
        assert after == before, (status, before, after)


def check_not_a_server_error(response: Any) -> None:
    status = response.status_code
    if status == 502:  # the mapped answer of a decision the venue could not execute
        body = response.json()
        assert body.get("code"), body
        return
    assert status < 500, (status, response.text[:500])


JSON, FORM = "application/json", "application/x-www-form-urlencoded"


def scenarios(paper: int, live: int) -> list[tuple[str, str, dict[str, Any], int]]:
    """Named decisions sent before the generated ones: each outcome the POST documents, once."""
    opening = {"account": paper, "symbol": "BTCUSDT", "action": "open_long", "quantity": "0.01", "leverage": 5}
    protected = {**opening, "take_profit": "90000", "stop_loss": "60000", "idempotency_key": "s-open"}
    close = {"account": paper, "symbol": "BTCUSDT", "action": "close"}
    return [
        ("open, protected", JSON, protected, 201),
        ("the same key again", JSON, protected, 200),
        ("the same key and payload as a form", FORM, protected, 200),
        ("the same key, another quantity", JSON, {**protected, "quantity": "0.02"}, 409),
        ("a stop above the price", JSON, {**opening, "stop_loss": "900000"}, 409),
        ("open on the live account (its venue is unreachable here)", JSON, {**opening, "account": live}, 502),
        ("open as a form", FORM, {**opening, "idempotency_key": "s-form"}, 201),
        ("close", JSON, close, 201),
        ("close with nothing open", JSON, close, 409),
        ("hold as a form", FORM, {**close, "action": "hold"}, 201),
        ("close with a quantity", JSON, {**close, "quantity": "1"}, 400),
    ]


@pytest.fixture
def unthrottled(settings):
    settings.API_THROTTLE_RATES = {}


def test_the_api_survives_its_own_schema(world, wsgi_app, capsys, unthrottled):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    statuses: Counter[tuple[str, int]] = Counter()
    media_types: Counter[str] = Counter()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == OPERATIONS

    def exercise(case: Any) -> Any:
        before = rows()
        response = case.call(headers=world["headers"])
        statuses[(case.operation.label, response.status_code)] += 1
        if case.media_type:
            media_types[case.media_type] += 1
        check_not_a_server_error(response)
        case.validate_response(response, checks=CHECKS, headers=world["headers"])
        check_writes(response, before, rows())
        return response

    post = schema["/api/decisions/"]["POST"]
    paper, live = world["ids"]["accounts"]
    for name, media_type, body, expected in scenarios(paper, live):
        response = exercise(post.Case(body=body, media_type=media_type))
        assert response.status_code == expected, (name, response.status_code, response.text[:300])

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(SEED)
            @settings(
                max_examples=POST_EXAMPLES if operation.label == "POST /api/decisions/" else EXAMPLES,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                steer(case, world["ids"])
                exercise(case)

            run()

    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} requests over {len(operations)} operations in {elapsed:.1f} s")
        for (label, status), count in sorted(statuses.items()):
            print(f"  {label:40} {status}: {count}")
        print(f"  bodies: {dict(media_types)}")
    # The run reached more than refusals: lists, real objects, executed and denied decisions.
    assert statuses[("POST /api/decisions/", 201)] > 0
    assert statuses[("POST /api/decisions/", 409)] > 0
    assert all(statuses[(op.label, 200)] > 0 for op in operations if op.method.upper() == "GET")
