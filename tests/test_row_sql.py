"""The order path's raw statements: audited writes in one round trip, deferred writes, and the
same rows as the ORM would write (PostgreSQL and SQLite)."""

from datetime import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from accounts.audit import InvalidTransition, batched_events, create_audited, transition
from accounts.row_sql import deferred_writes, prepared_values, save_fields, save_new, update_row
from execution.models import ExecutionEvent, Position, Trade
from execution.services.order_sql import lock_for_apply, lock_for_reserve
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


def make_trade(account, client_order_id="t-1", **fields):
    trade = Trade(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.01"),
        quantity=Decimal("0.01"),
        client_order_id=client_order_id,
        **fields,
    )
    create_audited(trade, account=account, data={"side": "BUY"})
    return trade


def test_create_audited_writes_the_row_and_its_creation_event():
    account = PaperAccountFactory()
    trade = make_trade(account, reserved_margin=Decimal("12.5"))
    stored = Trade.objects.get(pk=trade.pk)
    assert (stored.status, stored.reserved_margin, stored.client_order_id) == ("submitting", Decimal("12.5"), "t-1")
    event = ExecutionEvent.objects.get(subject_type="trade", subject_id=trade.pk)
    assert (event.kind, event.to_status, event.from_status, event.data) == (
        "trade.submitting",
        "submitting",
        "",
        {"side": "BUY"},
    )


def test_a_stale_transition_writes_nothing_and_raises():
    account = PaperAccountFactory()
    trade = make_trade(account)
    stale = Trade.objects.get(pk=trade.pk)
    transition(trade, to_status="filled", account=account, data={"n": 1})
    with pytest.raises(InvalidTransition, match="no longer"):
        transition(stale, to_status="rejected", account=account)
    assert Trade.objects.get(pk=trade.pk).status == "filled"
    assert list(ExecutionEvent.objects.filter(subject_id=trade.pk).values_list("kind", flat=True).order_by("id")) == [
        "trade.submitting",
        "trade.filled",
    ]


def test_deferred_writes_roll_back_whole_when_a_queued_compare_and_set_misses():
    """On PostgreSQL the writes are queued and the stale transition is found at the flush; on
    SQLite they go at once and it is found at once. Either way nothing of the block stays."""
    account = PaperAccountFactory()
    trade = make_trade(account)
    stale = Trade.objects.get(pk=trade.pk)
    transition(trade, to_status="cancelled", account=account)
    before = ExecutionEvent.objects.count()
    with pytest.raises(InvalidTransition), transaction.atomic(), deferred_writes(), batched_events():
        account.paper_realized_pnl = Decimal("5")
        save_fields(account, ["paper_realized_pnl"])
        transition(stale, to_status="filled", account=account)
    account.refresh_from_db()
    assert account.paper_realized_pnl == Decimal("0")
    assert ExecutionEvent.objects.count() == before
    assert Trade.objects.get(pk=trade.pk).status == "cancelled"


@pytest.mark.postgres
def test_deferred_writes_use_keys_taken_ahead_and_send_everything_at_the_end():
    account = PaperAccountFactory()
    state = lock_for_apply(account.pk, "BTCUSDT", opens_side="LONG", legs=2)
    assert len(state.keys[Position]) == 1
    with transaction.atomic(), deferred_writes(state.keys) as queue:
        position = save_new(
            Position(account=account, symbol="BTCUSDT", side="LONG", quantity=1, entry_price=100, leverage=2)
        )
        assert position.pk == state.keys[Position][0]
        assert queue is not None and len(queue.statements) == 1
        assert not Position.objects.filter(pk=position.pk).exists()  # not sent yet
    assert Position.objects.get(pk=position.pk).entry_price == Decimal("100")


@pytest.mark.postgres
def test_a_row_inserted_and_then_changed_in_one_queue_is_one_insert_of_its_last_values():
    """The paper order inserts its intent and moves it to filled in one queue: one INSERT with
    the filled values (the transition's events both written), not an INSERT and an UPDATE."""
    account = PaperAccountFactory()
    state = lock_for_reserve(account.pk, balance_as_of=None, keys_for=(True, 0))
    with transaction.atomic(), deferred_writes(state.keys) as queue, batched_events():
        trade = Trade(
            account=account,
            symbol="BTCUSDT",
            side="BUY",
            requested_quantity=Decimal("0.01"),
            quantity=Decimal("0.01"),
            client_order_id="merged-1",
        )
        create_audited(trade, account=account)
        created_at = trade.created_at
        trade.price, trade.fee = Decimal("65000"), Decimal("0.26")
        transition(trade, to_status="filled", account=account, update_fields=["price", "fee"])
        assert queue is not None
        assert [sql.split(" ")[0] for sql, _, _ in queue.statements] == ["INSERT"]  # the events follow at the end
    stored = Trade.objects.get(pk=trade.pk)
    assert (stored.status, stored.price, stored.fee, stored.created_at) == (
        "filled",
        Decimal("65000"),
        Decimal("0.26"),
        created_at,
    )
    events = ExecutionEvent.objects.filter(subject_type="trade", subject_id=trade.pk).order_by("id")
    assert [(e.from_status, e.to_status) for e in events] == [("", "submitting"), ("submitting", "filled")]


def test_update_row_writes_what_save_would_and_refuses_a_status():
    account = PaperAccountFactory()
    account.paper_realized_pnl = Decimal("-1.25")
    update_row(account, ["paper_realized_pnl"])
    account.refresh_from_db()
    assert account.paper_realized_pnl == Decimal("-1.25")
    trade = make_trade(account)
    with pytest.raises(ValueError, match="audit"):
        update_row(trade, ["status"])


def test_the_locking_reads_return_what_the_orm_returns():
    account = PaperAccountFactory(cooldown_seconds=30)
    first = make_trade(account, "t-1", reserved_margin=Decimal("3.5"))
    make_trade(account, "t-2", reserved_margin=Decimal("1.25"))
    Position.objects.create(account=account, symbol="ETHUSDT", side="SHORT", quantity=2, entry_price=3000, leverage=3)
    with transaction.atomic():
        state = lock_for_reserve(account.pk, balance_as_of=None)
        applied = lock_for_apply(account.pk, "ETHUSDT", opens_side=None, legs=0)
    orm_account = type(account).objects.get(pk=account.pk)
    assert state.account.paper_wallet == orm_account.paper_wallet
    assert state.account.api_secret == orm_account.api_secret  # secrets decrypted as the ORM does
    assert state.reserved_margin == Decimal("4.75")
    assert state.last_entry_at == Trade.objects.get(client_order_id="t-2").created_at >= first.created_at
    assert [p.symbol for p in state.positions] == ["ETHUSDT"]
    assert applied.position is not None and applied.position.side == "SHORT"
    assert applied.position.entry_price == Decimal("3000")
    if connection.vendor == "postgresql":  # a reduce-only fill with no legs takes no key
        assert all(keys == [] for keys in applied.keys.values())


def test_a_row_without_a_key_taken_ahead_goes_after_what_was_queued_before_it():
    """A flip closes the position and opens its successor: the close must reach the table first
    (one open position per symbol), even when the new row is inserted at once."""
    account = PaperAccountFactory()
    old = Position.objects.create(
        account=account, symbol="BTCUSDT", side="LONG", quantity=1, entry_price=100, leverage=2
    )
    with transaction.atomic(), deferred_writes({}), batched_events():
        old.quantity, old.margin = Decimal("0"), Decimal("0")
        transition(old, to_status="closed", account=account, update_fields=["quantity", "margin"])
        new = save_new(
            Position(account=account, symbol="BTCUSDT", side="SHORT", quantity=1, entry_price=100, leverage=2)
        )
    assert Position.objects.get(pk=old.pk).status == "closed"
    assert Position.objects.get(pk=new.pk).status == "open"


@pytest.mark.parametrize("model", [Trade, Position, ExecutionEvent])
def test_prepared_values_equal_what_django_prepares(model):
    """The fast path (PostgreSQL) skips Django's per-value preparation only where it is the
    identity: for every field of the order path's rows, the values are Django's."""
    account = PaperAccountFactory()
    trade = make_trade(account, reserved_margin=Decimal("12.5"), take_profit=Decimal("70000"))
    position = Position.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="LONG",
        quantity=Decimal("0.01"),
        entry_price=Decimal("65000"),
        leverage=5,
    )
    obj = {Trade: trade, Position: position, ExecutionEvent: ExecutionEvent.objects.filter(account=account).first()}[
        model
    ]
    fields = obj._meta.concrete_fields
    django_values = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
    values = prepared_values(obj, fields, add=False)
    for field, ours, theirs in zip(fields, values, django_values, strict=True):
        if field.name == "updated_at":  # auto_now: a new now() on every call
            continue
        assert (type(ours), str(ours)) == (type(theirs), str(theirs)), field.name


def test_prepared_values_leave_a_nan_or_a_naive_datetime_to_django():
    """A NaN is refused and a naive datetime converted (or warned about) as the ORM would: the
    fast path does not take them."""
    account = PaperAccountFactory()
    trade = make_trade(account)
    trade.reserved_margin = Decimal("NaN")
    with pytest.raises(ValidationError):
        prepared_values(trade, [Trade._meta.get_field("reserved_margin")], add=False)
    trade.filled_at = datetime(2026, 1, 1, 12, 0)  # naive
    field = Trade._meta.get_field("filled_at")
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        expected = field.get_db_prep_save(trade.filled_at, connection)
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        assert prepared_values(trade, [field], add=False) == [expected]
