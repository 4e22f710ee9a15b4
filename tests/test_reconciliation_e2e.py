"""Reconciliation end to end against the simulator: the command makes local state equal the exchange's."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from execution.models import PendingOrder, Position, ReconciliationRun, Trade
from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["v1", "v3"])
def live(request, sim):
    if request.param == "v1":
        return LiveV1AccountFactory(), sim.exchange.accounts["demo-v1"]
    return LiveV3AccountFactory(), sim.exchange.accounts["demo-v3"]


def no_sleep(seconds):
    return None


def behind_the_back(sim, remote, **params):
    return sim.exchange.place_order(remote, {k: str(v) for k, v in params.items()})


def run_command(*args):
    out = StringIO()
    call_command("reconcile_positions", *args, stdout=out)
    return out.getvalue()


def test_reconcile_command_converges_to_the_exchange(sim, live):
    account, remote = live
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss="60000"
    )
    # Behind the service's back: close BTC by hand (the TP/SL legs stay: the stop is now an orphan),
    # and open an ETH position the service never saw.
    behind_the_back(sim, remote, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.02", reduceOnly="true")
    behind_the_back(sim, remote, symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1")

    output = run_command("--account", str(account.pk))

    assert "position_missing_remotely" in output and "position_missing_locally" in output
    btc = Position.objects.get(symbol="BTCUSDT")
    assert btc.status == "closed"
    exit_trade = Trade.objects.get(reason="reconciliation")
    assert exit_trade.price and exit_trade.fee > 0  # from userTrades
    assert not [o for o in remote.orders.values() if o.is_open and o.symbol == "BTCUSDT"]  # orphans cancelled
    eth = Position.objects.get(symbol="ETHUSDT", status="open")
    assert eth.source == "reconciliation" and eth.side == "SHORT" and eth.quantity == Decimal("1")
    assert eth.entry_price == remote.positions["ETHUSDT"].entry
    resting = [o for o in remote.orders.values() if o.is_open and o.symbol == "ETHUSDT"]
    assert len(resting) == 1 and resting[0].type == "STOP_MARKET" and resting[0].side == "BUY"
    assert resting[0].stop_price > sim.exchange.symbols["ETHUSDT"].mark  # a short's stop above the mark
    assert PendingOrder.objects.get(symbol="ETHUSDT", status="pending").exchange_order_id

    second = reconcile_account(account)
    assert (second.status, second.differences, second.http_calls) == ("in_sync", 0, 2)


def test_a_filled_stop_is_booked_and_its_sibling_cancelled(sim, live):
    account, remote = live
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="64000"
    )
    sim.exchange.set_price("BTCUSDT", Decimal("63900"))  # the exchange fills the stop
    run = reconcile_account(account)
    assert run.status == "repaired"
    stop = PendingOrder.objects.get(kind="stop_loss")
    take = PendingOrder.objects.get(kind="take_profit")
    assert stop.status == "filled" and stop.trade.reason == "stop_loss" and stop.trade.exchange_order_id
    assert take.status == "cancelled"
    assert not [o for o in remote.orders.values() if o.is_open]  # the take-profit no longer rests
    assert Position.objects.get().status == "closed"
    assert reconcile_account(account).status == "in_sync"


def test_quantity_drift_is_corrected_and_recorded(sim, live):
    account, remote = live
    ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="SOLUSDT", side="BUY", quantity="10", leverage=2
    )
    behind_the_back(sim, remote, symbol="SOLUSDT", side="BUY", type="MARKET", quantity="5")
    run = reconcile_account(account)
    item = run.items.get(kind="position_drift")
    assert item.local["quantity"] == "10" and item.remote["positionAmt"] == "15"
    assert Position.objects.get().quantity == Decimal("15")


def test_dry_run_changes_nothing_but_the_run_record(sim, live):
    account, remote = live
    behind_the_back(sim, remote, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1")
    posts_before = sum(1 for method, _ in sim.server.request_log if method in ("POST", "DELETE"))
    output = run_command("--account", str(account.pk), "--dry-run")
    assert "dry run" in output and "position_missing_locally" in output
    assert not Position.objects.exists()
    assert sum(1 for method, _ in sim.server.request_log if method in ("POST", "DELETE")) == posts_before
    run = ReconciliationRun.objects.get()
    assert run.dry_run and run.status == "dry_run" and run.items.get().outcome == "dry_run"


def test_unknown_account_or_paper_account_is_exit_status_2(sim):
    with pytest.raises(CommandError) as caught:
        run_command("--account", "999")
    assert caught.value.returncode == 2 and "no account" in str(caught.value)
    paper = PaperAccountFactory()
    with pytest.raises(CommandError) as caught:
        run_command("--account", str(paper.pk))
    assert caught.value.returncode == 2 and "paper" in str(caught.value)
    assert not ReconciliationRun.objects.exists()
