"""Reconciliation against `responses` on the documented payloads: one test per difference kind."""

import json
import re
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from execution.models import ExecutionEvent, PendingOrder, Position, ReconciliationRun, Trade
from execution.services.reconciliation import claim_lease, reconcile_account
from tests import aster_payloads as P
from tests.factories import LiveV1AccountFactory
from tests.market import BASE, FakeMarket

pytestmark = pytest.mark.django_db


def risk_row(symbol="BTCUSDT", amount="0.010", entry="65000.5", mark="65100"):
    return {**P.POSITION_RISK[0], "symbol": symbol, "positionAmt": amount, "entryPrice": entry, "markPrice": mark}


def order_row(
    client_id,
    *,
    symbol="BTCUSDT",
    status="NEW",
    type_="STOP_MARKET",
    side="SELL",
    executed="0",
    avg="0",
    order_id=1,
    close_position=True,
):
    return {
        **P.ORDER_STOP_NEW,
        "clientOrderId": client_id,
        "symbol": symbol,
        "status": status,
        "type": type_,
        "side": side,
        "executedQty": executed,
        "avgPrice": avg,
        "orderId": order_id,
        "closePosition": close_position,
        "cumQuote": str(Decimal(executed) * Decimal(avg)),
    }


class FakeExchange:
    def __init__(self, rsps):
        self.rsps = rsps
        FakeMarket(rsps)
        self.positions: list[dict] = []
        self.open_orders: list[dict] = []
        self.history: dict[str, dict] = {}  # orders by client id, for queries
        self.trades: list[dict] = []
        self.placed: list[dict] = []
        self.cancelled: list[str] = []
        self.place_error: dict | None = None
        rsps.add_callback(
            responses.GET,
            re.compile(f"{BASE}/fapi/v2/positionRisk.*"),
            callback=lambda r: (200, {}, json.dumps(self.positions)),
        )
        rsps.add_callback(
            responses.GET,
            re.compile(f"{BASE}/fapi/v1/openOrders.*"),
            callback=lambda r: (200, {}, json.dumps(self.open_orders)),
        )
        rsps.add_callback(
            responses.GET,
            re.compile(f"{BASE}/fapi/v1/userTrades.*"),
            callback=lambda r: (200, {}, json.dumps(self.trades)),
        )
        rsps.add_callback(responses.GET, re.compile(f"{BASE}/fapi/v1/order\\?.*"), callback=self._query)
        rsps.add_callback(responses.DELETE, re.compile(f"{BASE}/fapi/v1/order\\?.*"), callback=self._cancel)
        rsps.add_callback(responses.POST, f"{BASE}/fapi/v1/order", callback=self._place)

    def _params(self, request):
        return dict(parse_qsl(request.body or urlsplit(request.url).query))

    def _query(self, request):
        body = self.history.get(self._params(request).get("origClientOrderId", ""))
        if body is None:
            return 400, {}, json.dumps({"code": -2013, "msg": "Order does not exist."})
        return 200, {}, json.dumps(body)

    def _cancel(self, request):
        client_id = self._params(request)["origClientOrderId"]
        self.cancelled.append(client_id)
        self.open_orders = [o for o in self.open_orders if o["clientOrderId"] != client_id]
        return 200, {}, json.dumps(order_row(client_id, status="CANCELED"))

    def _place(self, request):
        params = self._params(request)
        if self.place_error:
            return 400, {}, json.dumps(self.place_error)
        self.placed.append(params)
        row = order_row(
            params["newClientOrderId"],
            symbol=params["symbol"],
            type_=params["type"],
            side=params["side"],
            order_id=9000 + len(self.placed),
        )
        self.open_orders.append(row)
        return 200, {}, json.dumps(row)

    def http_calls(self):
        return [
            (c.request.method, urlsplit(c.request.url).path)
            for c in self.rsps.calls
            if "exchangeInfo" not in c.request.url
        ]


@pytest.fixture
def exchange():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeExchange(rsps)


@pytest.fixture
def account():
    return LiveV1AccountFactory()


def local_position(account, symbol="BTCUSDT", quantity="0.01", entry="65000.5", **fields):
    return Position.objects.create(
        account=account,
        symbol=symbol,
        side=fields.pop("side", "LONG"),
        quantity=Decimal(quantity),
        entry_price=Decimal(entry),
        leverage=5,
        **fields,
    )


def local_leg(account, position, kind, client_id, *, trigger="60000", exchange_id="11", sibling=None):
    leg = PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=position.symbol,
        kind=kind,
        side="SELL" if position.side == "LONG" else "BUY",
        trigger_price=Decimal(trigger),
        client_order_id=client_id,
        exchange_order_id=exchange_id,
        sibling=sibling,
    )
    if sibling is not None:
        PendingOrder.objects.filter(pk=sibling.pk).update(sibling=leg)
    return leg


def protected(account, exchange, **position_fields):
    position = local_position(account, stop_loss=Decimal("60000"), take_profit=Decimal("70000"), **position_fields)
    stop = local_leg(account, position, "stop_loss", "e1-sl", exchange_id="21")
    take = local_leg(account, position, "take_profit", "e1-tp", trigger="70000", exchange_id="22", sibling=stop)
    exchange.positions = [risk_row(amount=str(position.quantity), entry=str(position.entry_price))]
    exchange.open_orders = [
        order_row("e1-sl", order_id=21),
        order_row("e1-tp", order_id=22, type_="TAKE_PROFIT_MARKET"),
    ]
    return position, stop, take


def test_in_sync_costs_two_requests_and_records_no_item(exchange, account, django_assert_max_num_queries):
    protected(account, exchange)
    for index in range(5):  # more rows must not mean more queries
        symbol = ["ETHUSDT", "SOLUSDT", "ASTERUSDT", "BTCUSDT", "ETHUSDT"][index]
        if index < 3:
            local_position(account, symbol=symbol, quantity="1", entry="100")
            exchange.positions.append(risk_row(symbol=symbol, amount="1", entry="100"))
    with django_assert_max_num_queries(12):  # a fixed number: one read per kind of row, whatever their count
        run = reconcile_account(account)
    assert (run.status, run.differences, run.http_calls) == ("in_sync", 0, 2)
    assert exchange.http_calls() == [("GET", "/fapi/v2/positionRisk"), ("GET", "/fapi/v1/openOrders")]
    assert not run.items.exists()


def test_exchange_position_unknown_locally_is_adopted_and_protected(exchange, account):
    exchange.positions = [risk_row(symbol="ETHUSDT", amount="-2", entry="3500", mark="3500")]
    run = reconcile_account(account)
    assert run.status == "repaired"
    position = Position.objects.get()
    assert (position.side, position.quantity, position.entry_price, position.source) == (
        "SHORT",
        Decimal("2"),
        Decimal("3500"),
        "reconciliation",
    )
    (placed,) = exchange.placed
    assert (placed["type"], placed["side"], placed["closePosition"], placed["stopPrice"]) == (
        "STOP_MARKET",
        "BUY",
        "true",
        "3675",
    )  # 5 % above the mark, tick-rounded
    kinds = list(run.items.values_list("kind", "outcome"))
    assert kinds == [("position_missing_locally", "repaired"), ("position_unprotected", "repaired")]
    assert run.items.first().remote["positionAmt"] == "-2"
    assert PendingOrder.objects.get().exchange_order_id == "9001"


def test_local_position_flat_on_the_exchange_is_closed_from_user_trades(exchange, account):
    position, stop, _ = protected(account, exchange)
    exchange.positions = []  # closed by hand on the exchange; its legs still rest
    exchange.trades = [
        {
            **P.USER_TRADES[0],
            "orderId": 555,
            "side": "SELL",
            "price": "66000",
            "qty": "0.006",
            "commission": "-0.1386",
            "time": 1,
        },
        {
            **P.USER_TRADES[0],
            "orderId": 556,
            "side": "SELL",
            "price": "67000",
            "qty": "0.004",
            "commission": "-0.0938",
            "time": 2,
        },
    ]
    run = reconcile_account(account)
    position.refresh_from_db()
    assert position.status == "closed"
    trade = Trade.objects.get(reason="reconciliation")
    assert trade.price == Decimal("66400") and trade.fee == Decimal("0.2324")
    assert trade.realized_pnl == Decimal("0.01") * (Decimal("66400") - Decimal("65000.5")) - Decimal("0.2324")
    assert sorted(exchange.cancelled) == ["e1-sl", "e1-tp"]  # its protective orders no longer rest
    stop.refresh_from_db()
    assert stop.status == "cancelled"
    assert run.items.filter(kind="position_missing_remotely", outcome="repaired").exists()


def test_quantity_and_entry_drift_take_the_exchange_values(exchange, account):
    position, _, _ = protected(account, exchange)
    exchange.positions = [risk_row(amount="0.015", entry="65100")]
    run = reconcile_account(account)
    position.refresh_from_db()
    assert (position.quantity, position.entry_price) == (Decimal("0.015"), Decimal("65100"))
    item = run.items.get(kind="position_drift")
    assert (item.local["quantity"], item.remote["positionAmt"]) == ("0.01", "0.015")
    event = ExecutionEvent.objects.get(kind="position.corrected")
    assert event.data["before"]["quantity"] == "0.01" and event.data["after"]["quantity"] == "0.015"


def test_filled_leg_is_booked_and_its_sibling_cancelled_on_the_exchange(exchange, account):
    position, stop, take = protected(account, exchange)
    exchange.positions = []
    exchange.open_orders = [order_row("e1-tp", order_id=22, type_="TAKE_PROFIT_MARKET")]
    exchange.history["e1-sl"] = order_row("e1-sl", status="FILLED", executed="0.01", avg="59990", order_id=21)
    exchange.trades = [{**P.USER_TRADES[0], "orderId": 21, "commission": "-0.2099", "qty": "0.01", "price": "59990"}]
    run = reconcile_account(account)
    stop.refresh_from_db()
    take.refresh_from_db()
    assert stop.status == "filled" and stop.trade.price == Decimal("59990") and stop.trade.fee == Decimal("0.2099")
    assert take.status == "cancelled" and exchange.cancelled == ["e1-tp"]
    position.refresh_from_db()
    assert position.status == "closed"
    assert [i.kind for i in run.items.all()] == ["protective_order_gone"]


def test_cancelled_leg_is_recorded_and_protection_placed_again(exchange, account):
    position, stop, _ = protected(account, exchange)
    exchange.open_orders = [order_row("e1-tp", order_id=22, type_="TAKE_PROFIT_MARKET")]
    exchange.history["e1-sl"] = order_row("e1-sl", status="CANCELED", order_id=21)
    run = reconcile_account(account)
    stop.refresh_from_db()
    assert stop.status == "cancelled"
    assert [i.kind for i in run.items.all()] == ["protective_order_gone", "position_unprotected"]
    assert [p["type"] for p in exchange.placed] == ["STOP_MARKET"]  # only what is missing
    assert exchange.cancelled == []  # the resting take-profit stays as it is, not replaced
    legs = PendingOrder.objects.filter(position=position, status="pending")
    assert sorted(legs.values_list("kind", flat=True)) == ["stop_loss", "take_profit"]
    assert legs.get(kind="stop_loss").sibling == legs.get(kind="take_profit")


def test_orphan_protective_order_is_cancelled(exchange, account):
    exchange.open_orders = [order_row("old-sl", symbol="SOLUSDT", side="SELL")]
    run = reconcile_account(account)
    assert exchange.cancelled == ["old-sl"]
    item = run.items.get()
    assert (item.kind, item.outcome, item.remote["clientOrderId"]) == ("orphan_protective_order", "repaired", "old-sl")


def test_position_without_its_requested_protection_gets_it(exchange, account):
    position = local_position(account, stop_loss=Decimal("60000"))
    exchange.positions = [risk_row()]
    run = reconcile_account(account)
    (placed,) = exchange.placed
    assert (placed["type"], placed["stopPrice"]) == ("STOP_MARKET", "60000")
    assert run.items.get().kind == "position_unprotected"
    assert PendingOrder.objects.get(position=position).exchange_order_id == "9001"


def test_unknown_intent_is_resolved_by_client_id(exchange, account):
    trade = Trade.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.01"),
        quantity=Decimal("0.01"),
        leverage=5,
        client_order_id="k1-abc",
        status="unknown",
    )
    exchange.history["k1-abc"] = order_row(
        "k1-abc",
        status="FILLED",
        executed="0.01",
        avg="65000.5",
        type_="MARKET",
        side="BUY",
        order_id=77,
        close_position=False,
    )
    exchange.positions = [risk_row()]
    run = reconcile_account(account)
    trade.refresh_from_db()
    assert trade.status == "filled" and trade.exchange_order_id == "77"
    assert Position.objects.get().quantity == Decimal("0.01")
    assert run.items.get(kind="unknown_intent").outcome == "repaired"


def test_unrepairable_difference_fails_closed_to_reducing(exchange, account):
    exchange.positions = [risk_row(symbol="ETHUSDT", amount="1", entry="3500", mark="3500")]
    exchange.place_error = {"code": -2021, "msg": "Order would immediately trigger."}
    run = reconcile_account(account)
    assert run.status == "failed"
    account.refresh_from_db()
    assert account.trading_state == "reducing"
    assert ExecutionEvent.objects.filter(kind="account.trading_state", to_status="reducing").exists()
    assert run.items.get(kind="position_unprotected").outcome == "failed"


def test_an_unrepairable_difference_alerts_with_why(exchange, account, django_capture_on_commit_callbacks):
    from execution.models import Alert

    exchange.positions = [risk_row(symbol="ETHUSDT", amount="1", entry="3500", mark="3500")]
    exchange.place_error = {"code": -2021, "msg": "Order would immediately trigger."}
    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile_account(account)
    alert = Alert.objects.get(kind="reconciliation")
    assert (
        alert.account == account
        and f"run {run.pk}" in alert.message
        and "position_unprotected ETHUSDT" in alert.message
    )
    state = Alert.objects.get(kind="trading_state")
    assert state.message.startswith("trading state active -> reducing: reconciliation could not repair")


def test_a_held_lease_skips_the_run(exchange, account):
    from django.utils import timezone

    assert claim_lease(account, timezone.now())
    run = reconcile_account(account)
    assert run.status == "skipped" and exchange.http_calls() == []


def test_task_called_directly_reconciles_every_live_account_despite_failures(exchange, account):
    from execution.tasks import reconcile_live_positions

    broken = LiveV1AccountFactory()
    broken.api_version = "v3"  # corrupt credentials: this account cannot build a client
    type(broken).objects.filter(pk=broken.pk).update(api_version="v3")
    result = reconcile_live_positions()
    assert result[str(account.pk)] == "in_sync"
    assert result[str(broken.pk)].startswith("error") or result[str(broken.pk)] == "failed"
    assert ReconciliationRun.objects.filter(account=account, status="in_sync").exists()


def test_beat_task_fans_out_one_task_per_live_account_after_commit(
    account, monkeypatch, django_capture_on_commit_callbacks
):
    from execution import tasks

    sent = []
    monkeypatch.setattr(tasks.reconcile_account_task, "delay", lambda account_id: sent.append(account_id))
    second = LiveV1AccountFactory()
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.reconcile_live_positions.apply().get()
    assert result == {"queued": 2}
    assert sorted(sent) == sorted([account.pk, second.pk])


def test_an_overrunning_run_releases_only_its_own_lease(exchange, account):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Account
    from execution.services.reconciliation import LEASE, release_lease

    first = timezone.now() - LEASE - timedelta(seconds=1)
    assert claim_lease(account, first)
    later = timezone.now()
    assert claim_lease(account, later)  # the first run's lease expired: another run took the account
    release_lease(account, first)  # the first run finishes late
    assert Account.objects.get(pk=account.pk).reconcile_lease_until == later + LEASE
    release_lease(account, later)
    assert Account.objects.get(pk=account.pk).reconcile_lease_until is None


# ---- issue 13: exchange positions keyed by (symbol, positionSide); hedge rows fail closed


def hedge_row(side, amount, symbol="BTCUSDT", entry="65000.5"):
    return {**risk_row(symbol=symbol, amount=amount, entry=entry), "positionSide": side}


def test_long_and_short_rows_are_never_merged_and_fail_closed(exchange, account):
    position = local_position(account)  # LONG 0.01, as one-way mode would hold it
    exchange.positions = [hedge_row("LONG", "0.010"), hedge_row("SHORT", "-0.010")]
    exchange.open_orders = [order_row("manual-sl", order_id=31)]  # it may protect a hedge row: kept
    run = reconcile_account(account)
    assert run.status == "failed"
    items = list(run.items.order_by("pk"))
    assert [(i.kind, i.outcome, i.remote["positionSide"]) for i in items] == [
        ("position_hedge_mode", "failed", "LONG"),
        ("position_hedge_mode", "failed", "SHORT"),
    ]
    assert "one-way mode only" in items[0].message
    position.refresh_from_db()
    assert (position.status, position.quantity) == ("open", Decimal("0.01"))  # neither closed nor merged
    assert Position.objects.count() == 1  # nothing adopted
    assert exchange.placed == [] and exchange.cancelled == []
    account.refresh_from_db()
    assert account.trading_state == "reducing"


def test_a_hedge_row_next_to_one_way_rows_fails_closed_and_leaves_the_others_compared(exchange, account):
    protected(account, exchange)
    exchange.positions.append(hedge_row("SHORT", "-1", symbol="ETHUSDT", entry="3500"))
    run = reconcile_account(account)
    assert run.status == "failed"
    assert [(i.kind, i.symbol) for i in run.items.all()] == [("position_hedge_mode", "ETHUSDT")]
    assert not Position.objects.filter(symbol="ETHUSDT").exists()


def test_a_dry_run_reports_hedge_rows_without_failing_the_account(exchange, account):
    exchange.positions = [hedge_row("LONG", "0.010")]
    run = reconcile_account(account, dry_run=True)
    assert run.status == "dry_run" and run.items.get().kind == "position_hedge_mode"
    account.refresh_from_db()
    assert account.trading_state == "active"
