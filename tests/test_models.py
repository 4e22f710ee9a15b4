from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import transition
from execution.exceptions import InvalidTransition
from execution.models import ExecutionEvent, PendingOrder, Position, Trade

pytestmark = pytest.mark.django_db


def make_position(account, symbol="BTCUSDT", **fields):
    values = {"side": "LONG", "quantity": Decimal("0.01"), "entry_price": Decimal("65000"), "leverage": 5}
    values.update(fields)
    return Position.objects.create(account=account, symbol=symbol, **values)


def test_at_most_one_open_position_per_account_and_symbol(paper_account):
    make_position(paper_account)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_position(paper_account)
    make_position(paper_account, symbol="ETHUSDT")


def test_closed_positions_do_not_block_a_new_open_one(paper_account):
    first = make_position(paper_account)
    transition(first, to_status="closed", account=paper_account)
    Position.objects.filter(pk=first.pk).update(quantity=0, closed_at=timezone.now())
    make_position(paper_account)
    assert Position.objects.filter(account=paper_account, symbol="BTCUSDT").count() == 2


@pytest.mark.parametrize(
    "fields",
    [{"quantity": Decimal("0")}, {"quantity": Decimal("-1")}, {"side": "UP"}, {"status": "frozen"}],
)
def test_position_constraints(paper_account, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_position(paper_account, **fields)


def test_trade_constraints(paper_account):
    base = {"account": paper_account, "symbol": "BTCUSDT", "side": "BUY", "requested_quantity": Decimal("1")}
    with pytest.raises(IntegrityError), transaction.atomic():
        Trade.objects.create(**base, quantity=Decimal("0"), client_order_id="a")
    Trade.objects.create(**base, quantity=Decimal("1"), client_order_id="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        Trade.objects.create(**base, quantity=Decimal("1"), client_order_id="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        Trade.objects.create(**{**base, "side": "HOLD"}, quantity=Decimal("1"), client_order_id="b")


def test_transition_follows_the_table_and_writes_an_event(paper_account):
    trade = Trade.objects.create(
        account=paper_account, symbol="BTCUSDT", side="BUY", requested_quantity=1, quantity=1, client_order_id="t1"
    )
    transition(trade, to_status="unknown", account=paper_account, message="timeout")
    transition(trade, to_status="filled", account=paper_account)
    kinds = list(ExecutionEvent.objects.filter(subject_type="trade").order_by("id").values_list("kind", flat=True))
    assert kinds == ["trade.unknown", "trade.filled"]
    with pytest.raises(InvalidTransition):
        transition(trade, to_status="submitting", account=paper_account)
    trade.refresh_from_db()
    assert trade.status == "filled"


def test_pending_order_transitions(paper_account):
    position = make_position(paper_account)
    order = PendingOrder.objects.create(
        account=paper_account,
        position=position,
        symbol="BTCUSDT",
        kind="stop_loss",
        side="SELL",
        trigger_price=Decimal("60000"),
        client_order_id="sl-1",
    )
    with pytest.raises(InvalidTransition):
        transition(order, to_status="pending", account=paper_account)
    transition(order, to_status="triggered", account=paper_account)
    transition(order, to_status="filled", account=paper_account)
    with pytest.raises(InvalidTransition):
        transition(order, to_status="cancelled", account=paper_account)


def test_execution_events_are_append_only(paper_account):
    from accounts.audit import record_event

    event = record_event(account=paper_account, kind="test")
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()


def test_a_failed_nested_batch_leaves_no_events_in_the_outer_one(paper_account):
    from django.db import transaction

    from accounts.audit import batched_events, record_event
    from execution.models import ExecutionEvent

    with transaction.atomic(), batched_events():
        record_event(account=paper_account, kind="outer.kept")
        try:
            with transaction.atomic(), batched_events():
                record_event(account=paper_account, kind="inner.rolled_back")
                raise RuntimeError("the inner block fails")
        except RuntimeError:
            pass
        record_event(account=paper_account, kind="outer.after")
    kinds = set(ExecutionEvent.objects.filter(account=paper_account).values_list("kind", flat=True))
    assert kinds >= {"outer.kept", "outer.after"} and "inner.rolled_back" not in kinds
