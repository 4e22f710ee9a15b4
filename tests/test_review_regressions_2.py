# ruff: noqa: F811  (pytest fixtures imported from other test modules are redefined as arguments)
"""Regressions found by the second review: benign races that turned into a 500, a reverted stop,
or a position left unclosed."""

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.audit import InvalidTransition
from execution.exceptions import ProtectionFailed
from execution.models import PendingOrder, Position, Trade
from execution.services.ledger import cancel_leg
from execution.services.reconciliation import protection_repair, reconcile_account
from tests.factories import LiveV1AccountFactory
from tests.test_live_execution import service, venue  # noqa: F401 (fixtures)
from tests.test_reconciliation import account, exchange, local_leg, local_position, risk_row  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def test_protect_does_not_revert_protection_the_order_path_replaced_meanwhile(exchange, account, monkeypatch):
    position = local_position(account, stop_loss=Decimal("60000"))  # its stop is missing at the venue
    exchange.positions = [risk_row()]
    real_lock = protection_repair.lock_account
    calls = []

    def order_path_commits_first(pk):
        if not calls:  # the order path books an add with a new stop between the read and the lock
            calls.append(1)
            Position.objects.filter(pk=position.pk).update(stop_loss=Decimal("61000"), updated_at=timezone.now())
            local_leg(account, position, "stop_loss", "new-sl", trigger="61000", exchange_id="")
        return real_lock(pk)

    monkeypatch.setattr(protection_repair, "lock_account", order_path_commits_first)
    reconcile_account(account)
    position.refresh_from_db()
    assert position.stop_loss == Decimal("61000"), "reconciliation reverted the new stop to the old one"
    assert [p["stopPrice"] for p in exchange.placed] != ["60000"]


def test_protection_failure_with_a_leg_made_final_meanwhile_still_closes(venue):
    # the stop is placed, the take-profit refused; meanwhile another writer (a concurrent order
    # replacing the protection) cancels the stop here
    venue.order_replies = ["fill", "new", (400, {"code": -2021, "msg": "Order would immediately trigger."})]
    account = LiveV1AccountFactory()
    svc = service(account)
    real_cancel = svc.adapter.cancel_order

    def cancel(*, symbol, client_order_id):
        leg = PendingOrder.objects.get(client_order_id=client_order_id)
        if leg.status == "pending":
            cancel_leg(leg, account=account, reason="replaced by new protection (concurrent order)")
        return real_cancel(symbol=symbol, client_order_id=client_order_id)

    svc.adapter.cancel_order = cancel
    try:
        svc.execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
        )
    except InvalidTransition as exc:
        pytest.fail(f"a benign race escaped as InvalidTransition (a 500), the position was not closed: {exc}")
    except ProtectionFailed:
        pass
    assert Position.objects.get().status == "closed"


def test_a_slow_decision_settled_meanwhile_is_not_a_500():
    from unittest import mock

    from decisions.services import execute_decision, settle_decisions
    from execution.services.orders import ExecutionResult
    from tests.test_decision_settlement import decision_of, order_of

    account = LiveV1AccountFactory()
    decision = decision_of(account, age_seconds=600)  # its request has been running for a while
    trade = order_of(decision, status="submitting")

    def slow_order(**kwargs):
        settle_decisions()  # beat runs meanwhile: received + order in flight -> unknown
        Trade.objects.filter(pk=trade.pk).update(status="filled")
        return ExecutionResult(trade=Trade.objects.get(pk=trade.pk), position=None)

    with mock.patch("execution.services.ExecutionService.execute_market_order", side_effect=slow_order):
        try:
            execute_decision(decision)
        except InvalidTransition as exc:
            pytest.fail(f"benign race with settle_decisions escapes execute_decision (API 500): {exc}")
