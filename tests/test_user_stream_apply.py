"""User-data events applied through the ledger (no sockets): V1 and V3 accounts against the
simulator over HTTP; frames built from the simulator's own orders and trades."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ExecutionEvent
from execution.models import (
    Alert,
    ExchangeFill,
    PendingOrder,
    Position,
    ReconciliationRun,
    Trade,
)
from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from execution.services.user_stream import AccountEventApplier
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory
from tests.user_stream_helpers import account_update_frame, fill_frames, order_frame, sim_order

FACTORIES = {"v1": (LiveV1AccountFactory, "demo-v1"), "v3": (LiveV3AccountFactory, "demo-v3")}


@pytest.fixture(params=["v1", "v3"])
def live(request, sim, db):
    factory, sim_name = FACTORIES[request.param]
    return factory(), sim.exchange.accounts[sim_name]


def no_sleep(seconds: float) -> None:
    return None


def open_protected(account, *, quantity: str = "0.02"):
    return ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity=quantity, leverage=5, take_profit="70000", stop_loss="60000"
    )


def legs(result):
    by_kind = {leg.kind: leg for leg in result.pending_orders}
    return by_kind["take_profit"], by_kind["stop_loss"]


def applier_for(account, **kwargs):
    calls: list[int] = []
    kwargs.setdefault("reconcile", calls.append)
    applier = AccountEventApplier(account.pk, grace_seconds=kwargs.pop("grace_seconds", 0), **kwargs)
    return applier, calls


def test_take_profit_fill_closes_the_position_and_cancels_the_sibling_on_the_exchange(sim, live):
    account, remote = live
    result = open_protected(account)
    tp, sl = legs(result)
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))  # the TP fires on the exchange
    tp_order = sim_order(remote, tp.client_order_id)
    assert tp_order.status == "FILLED" and remote.positions["BTCUSDT"].amount == 0
    applier, reconciles = applier_for(account)

    applier.apply_frames(fill_frames(remote, tp_order))

    position = Position.objects.get()
    assert position.status == "closed" and position.quantity == 0
    close = Trade.objects.get(reason="take_profit")
    (sim_trade,) = [t for t in remote.trades if t["orderId"] == tp_order.order_id]
    assert close.client_order_id == f"{tp.client_order_id}-f"
    assert close.price == Decimal(sim_trade["price"]) and close.fee == Decimal(sim_trade["commission"])
    assert close.realized_pnl == Decimal(sim_trade["realizedPnl"]) - close.fee  # the exchange's rp, net of fee
    assert close.exchange_order_id == str(tp_order.order_id)
    tp.refresh_from_db()
    sl.refresh_from_db()
    assert tp.status == "filled" and tp.trade == close
    assert sl.status == "cancelled" and not sl.venue_cancel_pending
    assert sim_order(remote, sl.client_order_id).status == "CANCELED"  # cancelled on the exchange
    assert not ReconciliationRun.objects.exists() and reconciles == []
    assert ExchangeFill.objects.get().trade == close


def test_partial_fills_accumulate(sim, live):
    account, remote = live
    result = open_protected(account)
    tp, sl = legs(result)
    tp_order = sim_order(remote, tp.client_order_id)
    applier, _ = applier_for(account)
    common = {"x": "TRADE", "last_price": "70010", "commission": "0.1", "realized": "100"}

    applier.apply_frames(
        [order_frame(tp_order, X="PARTIALLY_FILLED", last_quantity="0.005", cumulative="0.005", trade_id=1, **common)]
    )
    position = Position.objects.get()
    assert position.status == "open" and position.quantity == Decimal("0.015")
    tp.refresh_from_db()
    assert tp.status == "pending"
    assert sim_order(remote, sl.client_order_id).status == "NEW"  # nothing cancelled yet

    applier.apply_frames(
        [order_frame(tp_order, X="FILLED", last_quantity="0.015", cumulative="0.02", trade_id=2, **common)]
    )
    position.refresh_from_db()
    tp.refresh_from_db()
    assert position.status == "closed"
    closes = Trade.objects.filter(reason="take_profit").order_by("id")
    assert [(t.client_order_id, t.quantity) for t in closes] == [
        (f"{tp.client_order_id}-f", Decimal("0.005")),
        (f"{tp.client_order_id}-f2", Decimal("0.015")),
    ]
    assert tp.status == "filled"
    assert sim_order(remote, sl.client_order_id).status == "CANCELED"


def test_an_external_cancel_is_repaired(sim, live):
    account, remote = live
    result = open_protected(account)
    tp, sl = legs(result)
    stop = sim.exchange.cancel_order(remote, order_id=None, client_order_id=sl.client_order_id)  # by hand, on the web
    applier, reconciles = applier_for(account)

    (applied,) = applier.apply_frames([order_frame(stop, x="CANCELED")])

    assert applied.action == "repaired" and reconciles == []
    sl.refresh_from_db()
    assert sl.status == "cancelled"
    new_stop = PendingOrder.objects.get(kind="stop_loss", status="pending")
    assert new_stop.trigger_price == Decimal("60000") and new_stop.exchange_order_id
    assert sim_order(remote, new_stop.client_order_id).status == "NEW"  # resting on the exchange
    assert new_stop.sibling == tp
    tp.refresh_from_db()
    assert tp.status == "pending" and tp.sibling == new_stop  # the TP was never touched
    assert sim_order(remote, tp.client_order_id).status == "NEW"


def test_a_deliberate_cancel_is_recorded_not_repaired(sim, live):
    account, remote = live
    result = open_protected(account)
    tp, sl = legs(result)
    ExecutionService(account, sleep=no_sleep).close_position("BTCUSDT")  # our close cancels both legs
    applier, reconciles = applier_for(account)
    frames = [order_frame(sim_order(remote, leg.client_order_id), x="CANCELED") for leg in (tp, sl)]

    results = applier.apply_frames(frames)

    assert [r.action for r in results] == ["recorded", "recorded"]
    assert PendingOrder.objects.filter(status="pending").count() == 0
    assert PendingOrder.objects.count() == 2 and reconciles == []
    assert ExecutionEvent.objects.filter(kind="pendingorder.venue_cancel_confirmed").count() == 2


def test_a_liquidation_closes_the_position_and_settles_its_legs(sim, live, django_capture_on_commit_callbacks):
    account, remote = live
    result = open_protected(account)
    tp, sl = legs(result)
    liquidation = sim_order(remote, tp.client_order_id)  # any order object gives the frame its shape
    frame = order_frame(
        liquidation,
        x="TRADE",
        X="FILLED",
        c="autoclose-1712345",
        o="LIQUIDATION",
        ot="LIQUIDATION",
        i=990001,
        q="0.02",
        last_quantity="0.02",
        cumulative="0.02",
        last_price="52000",
        trade_id=77,
        commission="0.5",
        realized="-260",
    )
    applier, _ = applier_for(account)

    with django_capture_on_commit_callbacks(execute=True):
        applier.apply_frames([frame])

    position = Position.objects.get()
    assert position.status == "closed"
    alert = Alert.objects.get(kind="liquidation")  # raised after the booking committed
    assert alert.account_id == account.pk and "liquidated at 52000" in alert.message
    trade = Trade.objects.get(reason="liquidation")
    assert (trade.price, trade.fee, trade.realized_pnl) == (Decimal("52000"), Decimal("0.5"), Decimal("-260.5"))
    assert set(PendingOrder.objects.values_list("status", flat=True)) == {"cancelled"}
    assert {sim_order(remote, leg.client_order_id).status for leg in (tp, sl)} == {"CANCELED"}


def test_the_same_event_twice_is_booked_once(sim, live):
    account, remote = live
    tp, _sl = legs(open_protected(account))
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))
    frames = fill_frames(remote, sim_order(remote, tp.client_order_id))
    applier, _ = applier_for(account)

    applier.apply_frames(frames)
    events_after_first = ExecutionEvent.objects.count()
    second = applier.apply_frames(frames)

    assert [r.action for r in second] == ["duplicate"]
    assert Trade.objects.filter(reason="take_profit").count() == 1
    assert ExecutionEvent.objects.count() == events_after_first


def test_an_event_reconciliation_already_booked_changes_nothing(sim, live):
    account, remote = live
    tp, _sl = legs(open_protected(account))
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))
    reconcile_account(account, sleep=no_sleep)  # the socket was down: the safety net booked it
    booked = list(Trade.objects.values_list("id", "status", "quantity"))
    position = Position.objects.get()
    assert position.status == "closed"
    applier, reconciles = applier_for(account)

    results = applier.apply_frames(fill_frames(remote, sim_order(remote, tp.client_order_id)))

    assert [r.action for r in results] == ["already_booked"]
    assert list(Trade.objects.values_list("id", "status", "quantity")) == booked and reconciles == []


def test_a_partly_streamed_leg_is_completed_by_reconciliation_without_double_booking(sim, live):
    account, remote = live
    tp, _sl = legs(open_protected(account))
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))  # fills 0.02 on the exchange
    tp_order = sim_order(remote, tp.client_order_id)
    applier, _ = applier_for(account)
    applier.apply_frames(
        [
            order_frame(
                tp_order,
                x="TRADE",
                X="PARTIALLY_FILLED",
                last_quantity="0.005",
                cumulative="0.005",
                last_price=fmt_price(tp_order),
                trade_id=1,
            )
        ]
    )  # then the socket dropped; reconciliation books the rest
    reconcile_account(account, sleep=no_sleep)
    closes = Trade.objects.filter(reason="take_profit")
    assert sum(t.quantity for t in closes) == Decimal("0.02")
    assert sorted(t.client_order_id for t in closes) == [f"{tp.client_order_id}-f", f"{tp.client_order_id}-f2"]
    assert Position.objects.get().status == "closed"


def fmt_price(order) -> str:
    return str(order.avg_price.quantize(Decimal("0.1")))


def test_an_entry_fill_the_order_path_booked_changes_nothing(sim, live):
    account, remote = live
    result = open_protected(account)
    entry = sim_order(remote, result.trade.client_order_id)
    before = list(Position.objects.values_list("id", "quantity", "entry_price"))
    events = ExecutionEvent.objects.count()
    applier, _ = applier_for(account)

    results = applier.apply_frames([order_frame(entry, x="NEW", X="NEW", z="0"), *fill_frames(remote, entry)])

    assert [r.action for r in results] == ["ignored", "already_booked"]
    assert list(Position.objects.values_list("id", "quantity", "entry_price")) == before
    assert Trade.objects.count() == 1 and ExecutionEvent.objects.count() == events
    assert ExchangeFill.objects.get().trade == result.trade


def test_an_order_not_ours_is_recorded_and_left_to_reconciliation(sim, live):
    account, remote = live
    foreign = sim.exchange.place_order(
        remote, {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "1", "newClientOrderId": "web_1"}
    )
    applier, reconciles = applier_for(account, grace_seconds=60)

    results = applier.apply_frames([order_frame(foreign, x="NEW", X="NEW", z="0"), *fill_frames(remote, foreign)])

    assert [r.action for r in results] == ["ignored", "recorded_foreign"]
    assert ExecutionEvent.objects.filter(kind="userstream.foreign_order").count() == 1
    assert not Trade.objects.exists() and not Position.objects.exists() and reconciles == []


def test_account_update_stores_the_wallet_and_a_position_mismatch_reconciles(sim, live):
    account, _remote = live
    open_protected(account)
    position = Position.objects.get()
    applier, reconciles = applier_for(account)
    in_sync = account_update_frame(wallet="99990.5", positions=[("BTCUSDT", "0.02", str(position.entry_price))])

    applier.apply_frames([in_sync])
    account.refresh_from_db()
    assert account.live_wallet_balance == Decimal("99990.5") and account.live_balance_at is not None
    assert reconciles == []

    applier.apply_frames([account_update_frame(wallet="99980", positions=[("BTCUSDT", "0", "0")])])
    assert reconciles == [account.pk]

    older = account_update_frame(wallet="1", E=1_000)
    applier.apply_frames([older])
    account.refresh_from_db()
    assert account.live_wallet_balance == Decimal("99980")  # an older event never overwrites a newer one


def test_a_hedge_mode_row_is_a_mismatch_even_when_its_amount_agrees(sim, live):
    account, _remote = live
    open_protected(account)
    position = Position.objects.get()
    applier, reconciles = applier_for(account)
    frame = json.loads(account_update_frame(wallet="99990", positions=[("BTCUSDT", "0.02", str(position.entry_price))]))
    frame["a"]["P"][0]["ps"] = "LONG"
    applier.apply_frames([json.dumps(frame)])
    assert reconciles == [account.pk]


def test_a_mismatch_explained_by_the_next_event_does_not_reconcile(sim, live):
    account, remote = live
    tp, _sl = legs(open_protected(account))
    sim.exchange.set_price("BTCUSDT", Decimal("70500"))
    now = [0.0]
    applier, reconciles = applier_for(account, grace_seconds=2, clock=lambda: now[0])

    applier.apply_frames([account_update_frame(wallet="100010", positions=[("BTCUSDT", "0", "0")])])
    assert reconciles == []  # held for the grace period
    applier.apply_frames(fill_frames(remote, sim_order(remote, tp.client_order_id)))
    now[0] = 5.0
    assert not applier.check_positions() and reconciles == []


def test_the_api_shows_the_live_wallet(sim, live):
    account, _remote = live
    applier, _ = applier_for(account)
    applier.apply_frames([account_update_frame(wallet="12345.6")])
    client = APIClient()
    client.force_authenticate(account.owner)
    body = client.get(reverse("account-detail", args=[account.pk])).json()
    assert Decimal(body["wallet_balance"]) == Decimal("12345.6") and body["wallet_balance_at"]


def test_malformed_or_contradicting_events_write_nothing(sim, live):
    account, remote = live
    tp, _sl = legs(open_protected(account))
    tp_order = sim_order(remote, tp.client_order_id)
    events = ExecutionEvent.objects.count()
    applier, reconciles = applier_for(account)
    wrong_symbol = order_frame(
        tp_order, x="TRADE", X="FILLED", s="ETHUSDT", last_quantity="0.02", last_price="70000", trade_id=9
    )
    wrong_side = order_frame(tp_order, x="TRADE", X="FILLED", S="BUY", last_quantity="0.02", last_price="70000")

    results = applier.apply_frames(["{not json", '{"e": "ORDER_TRADE_UPDATE", "E": 1}', wrong_symbol, wrong_side])

    assert results == [] and reconciles == []
    assert (applier.counters.malformed, applier.counters.rejected) == (2, 2)
    assert ExecutionEvent.objects.count() == events
    assert not ExchangeFill.objects.exists() and Trade.objects.count() == 1
    assert Position.objects.get().quantity == Decimal("0.02")
