"""Regressions found by review: races and fault paths that lost, doubled or unprotected money.

Each test reproduces one finding; see the issue note for the scenario behind each."""

import json
import re
from decimal import Decimal

import pytest
import responses

from execution.models import ExecutionEvent, Position, Trade
from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from tests import aster_payloads as P
from tests.factories import LiveV1AccountFactory
from tests.market import BASE
from tests.test_live_execution import FakeLiveVenue

pytestmark = pytest.mark.django_db


@pytest.fixture
def venue():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        v = FakeLiveVenue(rsps)
        v.remote_positions = []
        rsps.add_callback(
            responses.GET,
            re.compile(f"{BASE}/fapi/v2/positionRisk.*"),
            callback=lambda r: (200, {}, json.dumps(v.remote_positions)),
        )
        rsps.add_callback(
            responses.GET,
            re.compile(f"{BASE}/fapi/v1/openOrders.*"),
            callback=lambda r: (200, {}, json.dumps([b for b in v.known.values() if b["status"] == "NEW"])),
        )
        yield v


def test_reconciliation_and_the_order_path_both_book_one_fill(venue):
    """The order path marks its intent `unknown` and queries it by client id. While it waits
    between two queries, the reconciliation beat resolves the same `unknown` intent and books its
    fill. The order path then gets the fill too and books it again on its stale in-memory Trade."""
    account = LiveV1AccountFactory()
    venue.order_replies = ["fill-then-503"]  # the venue filled it, but answered 503
    real_query = venue._query
    queries = {"n": 0}

    def eventually_consistent_query(request):
        queries["n"] += 1
        if queries["n"] == 1:  # the order path's first query: not visible yet
            return 400, {}, json.dumps({"code": -2013, "msg": "Order does not exist."})
        return real_query(request)

    venue.rsps.remove(responses.GET, re.compile(re.escape(f"{BASE}/fapi/v1/order") + r"\?.*"))
    venue.rsps.add_callback(
        responses.GET, re.compile(re.escape(f"{BASE}/fapi/v1/order") + r"\?.*"), callback=eventually_consistent_query
    )

    def sleep_while_the_beat_runs(seconds):
        if queries["n"] == 1:
            venue.remote_positions = [
                {
                    **P.POSITION_RISK[0],
                    "symbol": "BTCUSDT",
                    "positionAmt": "0.010",
                    "entryPrice": "65000.5",
                    "markPrice": "65000.5",
                }
            ]
            reconcile_account(account, sleep=lambda s: None)

    ExecutionService(account, sleep=sleep_while_the_beat_runs).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )
    trade = Trade.objects.get(reason="entry")
    filled_events = ExecutionEvent.objects.filter(kind="trade.filled", subject_id=trade.pk).count()
    position = Position.objects.get(status="open")
    assert len(venue.order_posts()) == 1  # one order on the venue, 0.01 BTC
    assert (filled_events, position.quantity) == (1, Decimal("0.01")), (
        f"fill booked {filled_events} times; local position {position.quantity} BTC, venue 0.01"
    )


def test_an_order_filled_between_the_two_snapshot_reads_loses_its_stop(venue, monkeypatch):
    """Reconciliation reads positionRisk, then openOrders. An order that fills and places its stop
    between the two reads is seen as 'legs without a position': its stop is cancelled on the
    venue as an orphan, its position is 'missing remotely' (no exit trade: account set to
    reducing), and enforce_protection skips it because the (stale) snapshot has no position."""
    from execution.services.reconciliation import context as ctx_module

    account = LiveV1AccountFactory()

    def read_exchange(self):
        positions = {p.symbol: p for p in self.adapter.fetch_positions()}  # flat
        ExecutionService(account, sleep=lambda s: None).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
        )
        venue.remote_positions = [
            {
                **P.POSITION_RISK[0],
                "symbol": "BTCUSDT",
                "positionAmt": "0.010",
                "entryPrice": "65000.5",
                "markPrice": "65000.5",
            }
        ]
        return ctx_module.Snapshot(positions, self.adapter.open_orders())  # the new stop is in it

    monkeypatch.setattr(ctx_module.RunContext, "read_exchange", read_exchange)
    reconcile_account(account, sleep=lambda s: None)
    account.refresh_from_db()
    cancels = [c for c in venue.calls() if c[0] == "DELETE"]
    stop = venue.known[f"{Trade.objects.get(reason='entry').client_order_id}-sl"]
    assert stop["status"] == "NEW" and not cancels, f"the new position's stop was cancelled on the venue: {cancels}"
    assert account.trading_state == "active", f"account set to {account.trading_state}"


def test_legs_replaced_before_their_exchange_ids_are_recorded_stay_resting(venue, monkeypatch):
    """Order A opens with TP/SL; while A is placing them, order B on the same account adds to the
    position with a new TP/SL. B's apply cancels A's legs here, but they have no exchange id yet,
    so they are not marked venue_cancel_pending. A then places them and records their exchange ids
    on rows that are already cancelled: they rest on the venue and nobody cancels them."""
    from execution.services.adapters.live import LiveExecutionAdapter

    account = LiveV1AccountFactory()
    original = LiveExecutionAdapter.place_protective_orders
    state = {"b_done": False}

    def place(self, requests):
        if not state["b_done"]:
            state["b_done"] = True
            ExecutionService(account, sleep=lambda s: None).execute_market_order(
                symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="75000", stop_loss="61000"
            )
        return original(self, requests)

    monkeypatch.setattr(LiveExecutionAdapter, "place_protective_orders", place)
    ExecutionService(account, sleep=lambda s: None).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
    )
    resting = sorted((b["type"], b["stopPrice"]) for b in venue.known.values() if b["status"] == "NEW")
    assert len(resting) == 2, f"protective orders resting on the venue: {resting}"


def test_re_protecting_a_position_cancels_its_stop_and_never_places_it_again(venue):
    """The position's take-profit is gone from the venue (cancelled there) and the price has since
    moved past it. Reconciliation's enforce_protection cancels the resting stop first, then places
    TP and SL in that order; the venue refuses the TP (-2021, would immediately trigger) and the SL
    is never sent. Every later run does the same: the position stays without a stop."""
    account = LiveV1AccountFactory()
    ExecutionService(account, sleep=lambda s: None).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
    )
    venue.remote_positions = [
        {
            **P.POSITION_RISK[0],
            "symbol": "BTCUSDT",
            "positionAmt": "0.010",
            "entryPrice": "65000.5",
            "markPrice": "70500",
        }
    ]
    tp = next(b for b in venue.known.values() if b["type"] == "TAKE_PROFIT_MARKET")
    tp["status"] = "CANCELED"  # cancelled on the venue (operator, venue housekeeping, ...)
    refusal = (400, {"code": -2021, "msg": "Order would immediately trigger."})
    for _ in range(2):  # two beats
        venue.order_replies = [refusal]
        reconcile_account(account, sleep=lambda s: None)
    stops = [b for b in venue.known.values() if b["type"] == "STOP_MARKET" and b["status"] == "NEW"]
    account.refresh_from_db()
    assert stops, "the open position has no stop resting on the venue"


def test_a_paper_close_that_loses_the_race_to_a_liquidation_opens_the_opposite_position(market, monkeypatch):
    """A reduce-only close is planned against the open position; before it is applied the sweep
    closes that position (liquidation or stop). The apply step books the reduce-only fill against
    no position, and book_fill opens a SHORT of the full size."""
    from django.db import transaction
    from django.utils import timezone

    from execution.services.adapters.paper import PaperExecutionAdapter
    from execution.services.ledger import close_whole_position, lock_account
    from tests.factories import PaperAccountFactory

    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    original = PaperExecutionAdapter.execute_market_order

    def fill_while_the_sweep_liquidates(self, order):
        fill = original(self, order)
        with transaction.atomic():  # the sweep, between execute and apply
            locked = lock_account(account.pk)
            position = Position.objects.select_for_update().get(status="open")
            close_whole_position(
                account=locked,
                position=position,
                price=Decimal("60000"),
                fee=Decimal("0"),
                reason="liquidation",
                client_order_id="liq-test",
                now=timezone.now(),
            )
        return fill

    monkeypatch.setattr(PaperExecutionAdapter, "execute_market_order", fill_while_the_sweep_liquidates)
    # A paper order is now one transaction (its book read first: no window between execute and
    # apply); the two-step path, which this race needs, is the one without a prepared fill.
    monkeypatch.setattr(PaperExecutionAdapter, "prepare_fill", lambda self, **order: None)
    from execution.exceptions import ExchangeRejected

    with pytest.raises(ExchangeRejected) as nothing_left:  # not a success: nothing was left to close
        ExecutionService(account).close_position("BTCUSDT")
    assert nothing_left.value.code == "NOTHING_TO_REDUCE"
    opened = list(Position.objects.filter(status="open").values_list("side", "quantity"))
    assert opened == [], f"a reduce-only close opened {opened}"


def test_a_market_order_accepted_but_not_yet_settled_is_not_rejected(venue):
    """The venue accepts the MARKET order (status NEW) and it has not settled after the three
    polls. The intent is marked `rejected` (EXCHANGE_NOT_FILLED), a final status that nothing
    revisits, although the order rests on the venue and fills a moment later: the fill is never
    booked on its intent and its TP/SL are never placed."""
    from execution.exceptions import OrderOutcomeUnknown

    account = LiveV1AccountFactory()
    venue.order_replies = ["new"]  # accepted, not settled yet
    with pytest.raises(OrderOutcomeUnknown):
        ExecutionService(account, sleep=lambda s: None).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
        )
    trade = Trade.objects.get()
    assert trade.status in ("submitting", "unknown"), f"an accepted, open order was marked {trade.status}"


def test_the_fallback_keeps_a_rolled_back_fills_pnl_in_the_wallet(monkeypatch):
    """The per-order fallback reuses one in-memory Account across savepoints. An order whose
    savepoint rolls back after book_fill added its PnL to `account.paper_realized_pnl` leaves
    that PnL in memory; the next order saves it. The order stays `triggered`, is re-claimed and
    filled again later: its PnL reaches the wallet twice (and once without any trade)."""
    from django.utils import timezone

    from execution.aster.replies import BookLevel, OrderBook
    from execution.models import PendingOrder
    from execution.services.ledger import refresh_risk_fields
    from execution.services.paper import batch_fills, fills
    from execution.services.paper.prices import SymbolPrices
    from tests.factories import PaperAccountFactory

    now = timezone.now()
    account = PaperAccountFactory()
    orders, books, prices = [], {}, {}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        position = Position(
            account=account,
            symbol=symbol,
            side="LONG",
            quantity=Decimal("1"),
            entry_price=Decimal("1000"),
            leverage=5,
            mark_price=Decimal("1000"),
        )
        refresh_risk_fields(position)
        position.save()
        orders.append(
            PendingOrder.objects.create(
                account=account,
                position=position,
                symbol=symbol,
                kind="stop_loss",
                side="SELL",
                trigger_price=Decimal("900"),
                quantity=Decimal("0.5"),
                status="triggered",
                triggered_at=now,
                client_order_id=f"t-{symbol}-sl",
            )
        )
        books[(symbol, "SELL")] = OrderBook(
            symbol=symbol, last_update_id=1, time_ms=0, bids=(BookLevel(Decimal("890"), Decimal("10")),), asks=()
        )
        prices[symbol] = SymbolPrices(mark=Decimal("890"), last=None, mark_candles=[])

    def batch_fails(*args, **kwargs):
        raise RuntimeError("batched writer failed")

    calls = {"n": 0}
    real_cancel_sibling = fills.cancel_sibling

    def cancel_sibling_fails_once(order, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first order fails after book_fill")
        return real_cancel_sibling(order, **kwargs)

    monkeypatch.setattr(batch_fills, "fill_account_batch", batch_fails)
    monkeypatch.setattr(fills, "cancel_sibling", cancel_sibling_fails_once)
    fills.fill_account_orders(account.pk, orders, books, prices, now, fills.FillReport())

    account.refresh_from_db()
    booked = sum(t.realized_pnl for t in Trade.objects.filter(account=account, status="filled"))
    assert PendingOrder.objects.get(client_order_id="t-BTCUSDT-sl").status == "triggered"  # retried later
    assert account.paper_realized_pnl == booked, (
        f"wallet {account.paper_realized_pnl} but the booked trades realized {booked}"
    )


def test_an_add_booked_after_the_snapshot_is_undone_by_a_drift_correction(venue, monkeypatch):
    from execution.services.reconciliation import context as ctx_module

    account = LiveV1AccountFactory()
    ExecutionService(account, sleep=lambda s: None).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )
    row = {
        **P.POSITION_RISK[0],
        "symbol": "BTCUSDT",
        "positionAmt": "0.010",
        "entryPrice": "65000.5",
        "markPrice": "65000.5",
    }
    venue.remote_positions = [row]

    def read_exchange(self):
        snapshot = ctx_module.Snapshot(
            {p.symbol: p for p in self.adapter.fetch_positions()}, self.adapter.open_orders()
        )
        ExecutionService(account, sleep=lambda s: None).execute_market_order(  # the order path, meanwhile
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
        )
        venue.remote_positions = [{**row, "positionAmt": "0.020"}]
        return snapshot

    monkeypatch.setattr(ctx_module.RunContext, "read_exchange", read_exchange)
    reconcile_account(account, sleep=lambda s: None)
    position = Position.objects.get(status="open")
    assert position.quantity == Decimal("0.02"), f"local {position.quantity}, venue 0.02"


def test_expired_is_measured_from_the_intent_not_from_the_signature(venue, monkeypatch):
    """V1: recvWindow 5 s (+1 s), margin 5 s: 'expired' after created_at + 11 s. The account set-up
    before the send (a leverage change on a slow venue) takes 8 s, so the order is signed at
    about +8 s and the venue may accept it until about +14 s. The venue answers -1007 (it received
    the order), and the order path's own queries call it expired at about +11.8 s."""
    import time as real_time

    from execution.exceptions import ExecutionError
    from execution.services.adapters.live import LiveExecutionAdapter

    account = LiveV1AccountFactory()
    monkeypatch.setattr(LiveExecutionAdapter, "ensure_setup", lambda self, symbol, leverage: real_time.sleep(8))
    venue.order_replies = [(503, {"code": -1007, "msg": "Timeout waiting for response from backend server."})]
    with pytest.raises(ExecutionError) as caught:
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    trade = Trade.objects.get()
    decided = real_time.time()
    window_end = trade.created_at.timestamp() + 8 + 6  # signed at ~+8 s, recvWindow 5 s + 1 s
    assert not (caught.value.code == "EXPIRED_UNKNOWN" and decided < window_end), (
        f"declared EXPIRED_UNKNOWN {window_end - decided:.1f} s before the signed request's window ended"
    )
