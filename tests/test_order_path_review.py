"""Issue 17's order-path review: each defect proved by a test that failed before its fix.

1. The per-process set-up cache let two worker processes disagree with the venue about a
   symbol's leverage, so an order went out at another order's leverage.
2. The paper order's one transaction read the open position without a row lock, then wrote it
   back whole at the flush, so a mark-to-market committed in between was silently reverted.
"""

import json
import threading
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
import responses
from django.db import connection
from django.utils import timezone

from execution.models import Position
from execution.services import ExecutionService
from execution.services.adapters import live as live_module
from execution.services.adapters import paper as paper_module
from execution.services.paper.marking import mark_positions
from execution.services.setup_cache import ProcessCache
from tests.factories import LiveV1AccountFactory, PaperAccountFactory
from tests.market import BASE
from tests.test_live_execution import FakeLiveVenue, no_sleep

NEW_MARK = Decimal("70000")


@pytest.fixture
def venue():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeLiveVenue(rsps)


def _venue_leverage(venue, state):
    def set_leverage(request):
        state["leverage"] = int(dict(parse_qsl(request.body))["leverage"])
        return 200, {}, json.dumps({"leverage": state["leverage"], "maxNotionalValue": "250000", "symbol": "BTCUSDT"})

    venue.rsps.remove(responses.POST, f"{BASE}/fapi/v1/leverage")
    venue.rsps.add_callback(responses.POST, f"{BASE}/fapi/v1/leverage", callback=set_leverage)


def _venue_margin_type(venue, state):
    def set_margin_type(request):
        state["margin"] = dict(parse_qsl(request.body))["marginType"]
        return 200, {}, json.dumps({"code": 200, "msg": "success"})

    venue.rsps.remove(responses.POST, f"{BASE}/fapi/v1/marginType")
    venue.rsps.add_callback(responses.POST, f"{BASE}/fapi/v1/marginType", callback=set_margin_type)


@pytest.mark.django_db
def test_two_processes_each_remember_their_own_leverage_and_the_venue_drifts(venue, monkeypatch):
    state = {"leverage": None, "orders_at": []}
    _venue_leverage(venue, state)
    process_a, process_b = ProcessCache(), ProcessCache()
    account = LiveV1AccountFactory()

    def order(cache, leverage, side):
        monkeypatch.setattr(live_module, "SETUP", cache)
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side=side, quantity="0.01", leverage=leverage
        )
        state["orders_at"].append((leverage, state["leverage"]))

    order(process_a, 5, "BUY")  # worker A sets 5
    order(process_b, 10, "SELL")  # worker B sets 10
    order(process_a, 5, "BUY")  # worker A remembers 5: not set again
    # Each order must have gone out with the venue at the leverage the order (and its risk
    # checks, margin and liquidation price) assumed.
    assert state["orders_at"] == [(5, 5), (10, 10), (5, 5)]


@pytest.mark.django_db
def test_two_processes_and_a_margin_type_changed_between_their_orders(venue, monkeypatch):
    """The same for the margin type: an account switched to cross by one worker's order is set
    back to isolated by the other's next order (the account row says which it is)."""
    state = {"margin": None, "orders_at": []}
    _venue_margin_type(venue, state)
    process_a, process_b = ProcessCache(), ProcessCache()
    account = LiveV1AccountFactory(margin_type="ISOLATED")

    def order(cache, margin_type, side):
        monkeypatch.setattr(live_module, "SETUP", cache)
        account.margin_type = margin_type
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side=side, quantity="0.01", leverage=5
        )
        state["orders_at"].append((margin_type, state["margin"]))

    order(process_a, "ISOLATED", "BUY")
    order(process_b, "CROSSED", "SELL")
    order(process_a, "ISOLATED", "BUY")
    assert state["orders_at"] == [("ISOLATED", "ISOLATED"), ("CROSSED", "CROSSED"), ("ISOLATED", "ISOLATED")]


@pytest.mark.django_db
def test_an_order_at_another_leverage_waits_while_one_is_in_flight_in_another_process(venue, monkeypatch):
    """The shared flag alone leaves a window: between A's read of "the venue holds 5" and A's
    order reaching the venue, B could set 10. While A's order is in flight on 5, B's order at
    10 must not change it (it waits, then is refused SETUP_BUSY, unsent); once A is answered,
    B sets 10."""
    from execution.exceptions import ExecutionError

    state = {"leverage": None, "orders_at": [], "b": None}
    _venue_leverage(venue, state)
    process_a, process_b = ProcessCache(), ProcessCache()
    account = LiveV1AccountFactory()
    new_order = venue._new_order

    def order(cache, leverage, side):
        monkeypatch.setattr(live_module, "SETUP", cache)
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side=side, quantity="0.01", leverage=leverage
        )

    def a_in_flight(request):
        if state["b"] is None:  # A's order is at the venue: B's order at 10 comes now
            state["orders_at"].append(("A", 5, state["leverage"]))
            try:
                order(process_b, 10, "SELL")
                state["b"] = "sent"
            except ExecutionError as exc:
                state["b"] = exc.code
            monkeypatch.setattr(live_module, "SETUP", process_a)
        return new_order(request)

    venue.rsps.remove(responses.POST, f"{BASE}/fapi/v1/order")
    venue.rsps.add_callback(responses.POST, f"{BASE}/fapi/v1/order", callback=a_in_flight)
    order(process_a, 5, "BUY")
    assert state["b"] == "SETUP_BUSY" and state["leverage"] == 5  # nothing set under A's order
    order(process_b, 10, "SELL")  # A was answered: B sets 10
    assert state["leverage"] == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_mark_committed_during_a_paper_order_is_not_reverted(market, monkeypatch):
    account = PaperAccountFactory(paper_balance=Decimal("100000"), cooldown_seconds=0)
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    original = paper_module.BookFill.fill
    marked = {}
    threads = []

    def fill_while_the_marker_runs(self, order):
        def marker():
            try:
                marked["rows"] = mark_positions({"BTCUSDT": NEW_MARK}, timezone.now(), paper_only=True)
            finally:
                connection.close()

        thread = threading.Thread(target=marker)
        threads.append(thread)
        thread.start()
        # Without the position's lock the marker commits here; with it, it waits for the order.
        thread.join(timeout=1)
        return original(self, order)

    monkeypatch.setattr(paper_module.BookFill, "fill", fill_while_the_marker_runs)
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    threads[0].join(timeout=10)
    assert marked.get("rows") == 1, "the marker did not run during the order"
    position = Position.objects.get(account=account, status="open")
    assert position.quantity == Decimal("0.02")
    assert position.mark_price == NEW_MARK, f"the committed mark was reverted to {position.mark_price}"


@pytest.mark.django_db
def test_a_new_row_takes_its_key_without_returning_where_the_database_has_none(monkeypatch):
    """4. RETURNING needs SQLite >= 3.35: where the database cannot return columns from an
    INSERT, the key is the cursor's lastrowid (PostgreSQL always has RETURNING; psycopg has no
    lastrowid, so this runs on SQLite)."""
    from django.test.utils import CaptureQueriesContext

    from accounts.audit import create_audited
    from accounts.row_sql import insert_row
    from execution.models import ExecutionEvent, Trade

    if connection.vendor != "sqlite":
        pytest.skip("the fallback is SQLite's: PostgreSQL always has RETURNING")
    account = PaperAccountFactory()
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)

    def trade(client_order_id):
        return Trade(
            account=account,
            symbol="BTCUSDT",
            side="BUY",
            requested_quantity=Decimal("0.01"),
            quantity=Decimal("0.01"),
            client_order_id=client_order_id,
        )

    with CaptureQueriesContext(connection) as captured:
        first = insert_row(trade("r-1"))
        second = trade("r-2")
        event = create_audited(second, account=account)
    assert not [q["sql"] for q in captured.captured_queries if "RETURNING" in q["sql"]]
    assert Trade.objects.get(pk=first.pk).client_order_id == "r-1"
    assert Trade.objects.get(pk=second.pk).client_order_id == "r-2"
    assert ExecutionEvent.objects.get(pk=event.pk).subject_id == second.pk
