"""Intents in doubt end in a known, protected state (issue #10, defects 3, 4 and 5).

- A `submitting` intent whose process died between sending and booking is resolved by
  reconciliation by client order id, like an `unknown` one (defect 3).
- Whoever resolves an intent books the fill on it and gives the position the protection the
  intent asked for (defects 3 and 4).
- "No such order" is final once the venue's freshness window has passed and two reads some
  seconds apart agree: the intent is `rejected` (EXPIRED_UNKNOWN) and the account is not held
  (defect 5). Within the window it stays unknown.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services.reconciliation import reconcile_account
from tests.test_reconciliation import account, exchange, order_row, risk_row  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def intent(account, *, status, age_seconds, take_profit=None, stop_loss=None, client_id="k1-intent"):  # noqa: F811
    trade = Trade.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.01"),
        quantity=Decimal("0.01"),
        leverage=5,
        client_order_id=client_id,
        status=status,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    then = timezone.now() - timedelta(seconds=age_seconds)
    Trade.objects.filter(pk=trade.pk).update(created_at=then, updated_at=then)
    trade.refresh_from_db()
    return trade


def filled_on_the_exchange(exchange, client_id="k1-intent"):  # noqa: F811
    exchange.history[client_id] = order_row(
        client_id,
        status="FILLED",
        executed="0.01",
        avg="65000.5",
        type_="MARKET",
        side="BUY",
        order_id=77,
        close_position=False,
    )
    exchange.positions = [risk_row()]


def test_a_submitting_intent_of_a_dead_process_is_booked_and_protected(exchange, account):  # noqa: F811
    trade = intent(
        account, status="submitting", age_seconds=600, take_profit=Decimal("70000"), stop_loss=Decimal("60000")
    )
    filled_on_the_exchange(exchange)
    run = reconcile_account(account)
    trade.refresh_from_db()
    assert trade.status == "filled" and trade.exchange_order_id == "77"  # the fill is linked to its intent
    position = Position.objects.get(status="open")
    assert trade.position == position and position.take_profit == Decimal("70000")
    legs = PendingOrder.objects.filter(position=position, status="pending")
    assert {leg.kind for leg in legs} == {"take_profit", "stop_loss"}
    assert {p["newClientOrderId"] for p in exchange.placed} == {"k1-intent-tp", "k1-intent-sl"}
    assert all(leg.exchange_order_id for leg in legs)
    assert run.status == "repaired"
    assert not run.items.filter(kind="position_missing_locally").exists()  # not adopted with a 5 % stop


def test_a_young_submitting_intent_is_left_to_its_process(exchange, account):  # noqa: F811
    trade = intent(account, status="submitting", age_seconds=5)
    run = reconcile_account(account)
    trade.refresh_from_db()
    assert trade.status == "submitting" and run.status == "in_sync"


def test_an_unknown_outcome_resolved_by_reconciliation_gets_its_protection(exchange, account):  # noqa: F811
    trade = intent(account, status="unknown", age_seconds=30, stop_loss=Decimal("60000"))
    filled_on_the_exchange(exchange)
    run = reconcile_account(account)
    trade.refresh_from_db()
    assert trade.status == "filled"
    leg = PendingOrder.objects.get(status="pending")
    assert (leg.kind, leg.client_order_id) == ("stop_loss", "k1-intent-sl") and leg.exchange_order_id
    assert run.status == "repaired"
    # The next run finds it protected, as it is.
    exchange.open_orders = [order_row("k1-intent-sl", order_id=9001)]
    assert reconcile_account(account).status == "in_sync"


def fake_clock(step: float):
    ticks = itertools.count()
    start = timezone.now().timestamp()
    return lambda: start + next(ticks) * step


def test_an_order_the_exchange_never_saw_expires_once_its_window_has_passed(exchange, account):  # noqa: F811
    trade = intent(account, status="unknown", age_seconds=60)  # V1: recvWindow 5 s + 1 s, + 5 s margin
    run = reconcile_account(account, sleep=lambda s: None, clock=fake_clock(1.0))  # reads 1 s apart
    trade.refresh_from_db()
    assert trade.status == "rejected" and trade.error_code == "EXPIRED_UNKNOWN"
    assert ExecutionEvent.objects.filter(kind="trade.rejected", subject_id=trade.pk).exists()
    assert run.status == "repaired"
    account.refresh_from_db()
    assert account.trading_state == "active"  # not held


def test_not_found_within_the_window_is_not_final(exchange, account):  # noqa: F811
    trade = intent(account, status="unknown", age_seconds=2)
    reconcile_account(account, sleep=lambda s: None, clock=fake_clock(1.0))
    trade.refresh_from_db()
    assert trade.status == "unknown"


def test_one_read_is_not_enough_to_call_it_expired(exchange, account):  # noqa: F811
    trade = intent(account, status="unknown", age_seconds=60)
    reconcile_account(account, sleep=lambda s: None, clock=fake_clock(0.1))  # four reads within 0.4 s
    trade.refresh_from_db()
    assert trade.status == "unknown"
