"""A decision follows its order's final outcome (issue #10, defects 3 and 4).

An ambiguous answer from the venue leaves the decision `unknown` (202), linked to its order; a
decision whose process died stays `received`. Once reconciliation has settled the order,
`settle_decisions` (Celery beat) makes the decision `executed` or `failed`.
"""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from decisions.models import Decision
from decisions.services import execute_decision, execution_key, settle_decisions
from execution.exceptions import OrderOutcomeUnknown
from execution.models import Trade
from execution.services.orders import client_order_id_for
from tests.factories import LiveV1AccountFactory

pytestmark = pytest.mark.django_db


def decision_of(account, *, status="received", age_seconds=0):
    decision = Decision.objects.create(
        account=account, symbol="BTCUSDT", action="open_long", quantity=Decimal("0.01"), leverage=5, status=status
    )
    Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(seconds=age_seconds))
    decision.refresh_from_db()
    return decision


def order_of(decision, *, status):
    return Trade.objects.create(
        account=decision.account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.01"),
        quantity=Decimal("0.01"),
        leverage=5,
        client_order_id=client_order_id_for(decision.account, execution_key(decision)),
        status=status,
        price=Decimal("65000") if status == "filled" else None,
    )


def test_an_ambiguous_answer_leaves_the_decision_unknown_and_linked():
    account = LiveV1AccountFactory()
    decision = decision_of(account)
    trade = order_of(decision, status="unknown")
    with mock.patch(
        "execution.services.ExecutionService.execute_market_order",
        side_effect=OrderOutcomeUnknown("still unknown after 4 queries"),
    ):
        execute_decision(decision)
    decision.refresh_from_db()
    assert (decision.status, decision.trade) == ("unknown", trade)


def test_an_unknown_decision_becomes_executed_when_its_order_filled():
    account = LiveV1AccountFactory()
    decision = decision_of(account, status="unknown")
    trade = order_of(decision, status="filled")
    assert settle_decisions() == 1
    decision.refresh_from_db()
    assert (decision.status, decision.trade) == ("executed", trade)


def test_an_unknown_decision_fails_when_its_order_expired():
    account = LiveV1AccountFactory()
    decision = decision_of(account, status="unknown")
    trade = order_of(decision, status="rejected")
    Trade.objects.filter(pk=trade.pk).update(error_code="EXPIRED_UNKNOWN")
    settle_decisions()
    decision.refresh_from_db()
    assert decision.status == "failed" and decision.reason.startswith("EXPIRED_UNKNOWN")


def test_a_decision_whose_process_died_follows_its_order():
    account = LiveV1AccountFactory()
    filled = decision_of(account, age_seconds=600)
    order_of(filled, status="filled")
    in_doubt = decision_of(account, age_seconds=600)
    order_of(in_doubt, status="submitting")
    never_sent = decision_of(account, age_seconds=1800)  # no order after 15 minutes: never sent
    young = decision_of(account, age_seconds=1)
    assert settle_decisions() == 3
    statuses = {d.pk: d.status for d in Decision.objects.all()}
    assert statuses[filled.pk] == "executed"
    assert statuses[in_doubt.pk] == "unknown"  # and later follows its order
    assert statuses[never_sent.pk] == "failed"
    assert statuses[young.pk] == "received"  # its process may still be executing it
