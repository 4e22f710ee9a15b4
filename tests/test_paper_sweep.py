"""Paper TP/SL triggers, liquidation, funding and mark-to-market in the sweep."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command

from execution.models import ExecutionEvent, FundingPayment, PendingOrder, Position, Trade
from execution.services import ExecutionService
from execution.services.paper.sweep import sweep_paper_triggers
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()
    yield
    cache.clear()


def open_long(account, *, symbol="BTCUSDT", quantity="0.1", leverage=5, **protection):
    return ExecutionService(account).execute_market_order(
        symbol=symbol, side="BUY", quantity=quantity, leverage=leverage, **protection
    )


def test_stop_loss_triggers_on_the_mark_and_fills_at_the_market(market, paper_account):
    opened = open_long(paper_account, take_profit="70000", stop_loss="64000")
    assert sweep_paper_triggers().triggered == 0
    market.set_price("BTCUSDT", "63990")  # mark 63990 <= stop 64000
    report = sweep_paper_triggers()
    assert (report.triggered, report.filled) == (1, 1)
    stop = PendingOrder.objects.get(kind="stop_loss")
    tp = PendingOrder.objects.get(kind="take_profit")
    assert stop.status == "filled" and tp.status == "cancelled"
    trade = stop.trade
    assert trade.reason == "stop_loss" and trade.side == "SELL" and trade.quantity == Decimal("0.1")
    assert trade.price == Decimal("63989.5")  # the best bid after the move, not the trigger price
    position = Position.objects.get(pk=opened.position.pk)
    assert position.status == "closed" and position.quantity == 0
    assert position.realized_pnl < 0
    assert market.non_market_calls() == []


def test_take_profit_triggers_when_price_rises_to_it(market, paper_account):
    open_long(paper_account, take_profit="66000", stop_loss="60000")
    market.set_price("BTCUSDT", "66000")
    assert sweep_paper_triggers().filled == 1
    assert PendingOrder.objects.get(kind="take_profit").trade.reason == "take_profit"
    assert PendingOrder.objects.get(kind="stop_loss").status == "cancelled"


def test_short_protection_triggers_mirrored(market, paper_account):
    ExecutionService(paper_account).execute_market_order(
        symbol="ETHUSDT", side="SELL", quantity="1", leverage=5, take_profit="3300", stop_loss="3600"
    )
    market.set_price("ETHUSDT", "3600.5")
    sweep_paper_triggers()
    stop = PendingOrder.objects.get(kind="stop_loss")
    assert stop.status == "filled" and stop.trade.side == "BUY"


def test_contract_price_orders_follow_the_last_price_not_the_mark(market, paper_account):
    opened = open_long(paper_account, stop_loss="64000")
    PendingOrder.objects.filter(position=opened.position).update(working_type="CONTRACT_PRICE")
    market.set_price("BTCUSDT", "64500", mark_premium="-0.02")  # mark ~63210, last 64500
    assert sweep_paper_triggers().triggered == 0
    market.set_price("BTCUSDT", "63999", mark_premium="0.02")  # mark ~65279, last 63999
    assert sweep_paper_triggers().filled == 1


def test_mark_price_orders_ignore_the_last_price(market, paper_account):
    open_long(paper_account, stop_loss="64000")
    market.set_price("BTCUSDT", "63000", mark_premium="0.03")  # last crossed, mark 64890 did not
    assert sweep_paper_triggers().triggered == 0


def test_a_crossing_between_two_sweeps_is_found_in_the_minute_candles(market, paper_account):
    start = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        market.set_price("BTCUSDT", "65000")
        open_long(paper_account, stop_loss="64000")
        traveller.move_to(start + timedelta(seconds=60))  # the next minute: a wick through the stop
        market.set_price("BTCUSDT", "63800")
        market.set_price("BTCUSDT", "65000")
        traveller.move_to(start + timedelta(seconds=125))
        report = sweep_paper_triggers()
    assert report.filled == 1
    trade = PendingOrder.objects.get(kind="stop_loss").trade
    assert trade.price <= Decimal("64000")  # the price came back: no better than the stop


def test_a_wick_before_the_order_existed_does_not_trigger_it(market, paper_account):
    start = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        market.set_price("BTCUSDT", "63800")
        market.set_price("BTCUSDT", "65000")
        traveller.move_to(start + timedelta(seconds=20))
        open_long(paper_account, stop_loss="64000")
        traveller.move_to(start + timedelta(seconds=70))
        assert sweep_paper_triggers().triggered == 0


def test_one_market_data_request_serves_every_symbol(market):
    for index, symbol in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT"]):
        account = PaperAccountFactory(paper_balance=Decimal("100000"))
        quantity = ["0.1", "1", "10"][index]
        price = market.exchange.symbols[symbol].price
        open_long(account, symbol=symbol, quantity=quantity, stop_loss=str(price * Decimal("0.9")))
    before = market.calls_to("/fapi/v1/premiumIndex")
    sweep_paper_triggers()
    sweep_paper_triggers()
    assert market.calls_to("/fapi/v1/premiumIndex") - before == 2  # one per sweep, not one per order
    assert market.calls_to("/fapi/v1/ticker/price") == 0  # no CONTRACT_PRICE order: no last prices needed


def test_mark_to_market_updates_unrealized_pnl(market, paper_account):
    opened = open_long(paper_account, quantity="0.1")
    market.set_price("BTCUSDT", "66000")
    sweep_paper_triggers()
    position = Position.objects.get(pk=opened.position.pk)
    assert position.mark_price == Decimal("66000")
    assert position.unrealized_pnl == ((Decimal("66000") - position.entry_price) * Decimal("0.1")).quantize(
        Decimal("1e-10")
    )


def test_liquidation_at_the_mark_with_the_exchange_liquidation_fee(market, paper_account):
    opened = open_long(paper_account, quantity="0.1", leverage=20, take_profit="90000")
    liquidation_price = opened.position.liquidation_price
    assert liquidation_price is not None
    market.set_price("BTCUSDT", str(liquidation_price - 10))
    report = sweep_paper_triggers()
    assert report.liquidated == 1
    trade = Trade.objects.get(reason="liquidation")
    assert trade.price == market.exchange.symbols["BTCUSDT"].mark
    assert trade.fee == (trade.quantity * trade.price * Decimal("0.01")).quantize(Decimal("1e-10"))
    position = Position.objects.get(pk=opened.position.pk)
    assert position.status == "closed"
    assert trade.realized_pnl >= -opened.position.margin  # an isolated position loses at most its margin
    assert PendingOrder.objects.get().status == "cancelled"
    assert ExecutionEvent.objects.filter(kind="position.liquidated").count() == 1


def test_funding_is_paid_once_per_funding_time_by_longs_when_positive(market):
    long_account, short_account = PaperAccountFactory(), PaperAccountFactory()
    start = datetime(2026, 11, 25, 7, 59, 0, tzinfo=UTC)
    funding_time = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
    market.exchange.symbols["BTCUSDT"].funding_events = [(int(funding_time.timestamp() * 1000), Decimal("0.0001"))]
    with time_machine.travel(start, tick=False) as traveller:
        long_position = open_long(long_account, quantity="0.1").position
        short = ExecutionService(short_account).execute_market_order(
            symbol="BTCUSDT", side="SELL", quantity="0.1", leverage=5
        )
        traveller.move_to(funding_time + timedelta(seconds=30))
        first = sweep_paper_triggers()
        cache.clear()
        second = sweep_paper_triggers()
    assert (first.funding_payments, second.funding_payments) == (2, 0)
    mark = market.exchange.symbols["BTCUSDT"].mark
    paid = FundingPayment.objects.get(position=long_position)
    received = FundingPayment.objects.get(position=short.position)
    assert paid.amount == (Decimal("0.1") * mark * Decimal("0.0001")).quantize(Decimal("1e-10"))
    assert received.amount == -paid.amount
    long_position.refresh_from_db()
    assert long_position.funding_paid == paid.amount
    long_account.refresh_from_db()
    assert long_account.paper_realized_pnl == long_position.realized_pnl


def test_funding_is_paid_at_the_first_sweep_after_the_funding_time_and_fetched_once_per_period(market, paper_account):
    funding_time = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
    market.exchange.symbols["BTCUSDT"].funding_events = [(int(funding_time.timestamp() * 1000), Decimal("0.0001"))]
    with time_machine.travel(funding_time - timedelta(minutes=5), tick=False) as traveller:
        open_long(paper_account, quantity="0.1")
        assert sweep_paper_triggers().funding_payments == 0  # checked: nothing due yet
        sweep_paper_triggers()
        fetched_before = market.calls_to("/fapi/v1/fundingRate")
        traveller.move_to(funding_time + timedelta(seconds=5))
        assert sweep_paper_triggers().funding_payments == 1  # the next funding time moved: checked again
        sweep_paper_triggers()
    assert market.calls_to("/fapi/v1/fundingRate") == fetched_before + 1


def test_positions_opened_after_the_funding_time_do_not_pay_it(market, paper_account):
    funding_time = datetime.now(UTC) - timedelta(minutes=5)
    market.exchange.symbols["BTCUSDT"].funding_events = [(int(funding_time.timestamp() * 1000), Decimal("0.0001"))]
    open_long(paper_account, quantity="0.1")
    assert sweep_paper_triggers().funding_payments == 0


def test_sweep_command_and_task(market, paper_account):
    from execution.tasks import sweep_paper_triggers as task

    open_long(paper_account, stop_loss="64000")
    market.set_price("BTCUSDT", "63000")
    out = StringIO()
    call_command("sweep_paper_triggers", stdout=out)
    assert "filled 1" in out.getvalue()
    assert task()["filled"] == 0  # nothing left to do: the command already filled it


def _stop_out(market, account):
    opened = open_long(account, take_profit="70000", stop_loss="64000")
    return opened.position


def test_the_batched_fill_path_does_the_work(market, paper_account, monkeypatch):
    from execution.services.paper import fills

    def per_order_path_must_not_run(*args, **kwargs):
        raise AssertionError("the per-order path ran")

    monkeypatch.setattr(fills, "fill_triggered_order", per_order_path_must_not_run)
    _stop_out(market, paper_account)
    market.set_price("BTCUSDT", "63990")
    assert sweep_paper_triggers().filled == 1


def test_a_failing_batch_falls_back_to_filling_order_by_order(market, paper_account, monkeypatch):
    from execution.services.paper import batch_fills

    def broken_batch(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(batch_fills, "fill_account_batch", broken_batch)
    _stop_out(market, paper_account)
    market.set_price("BTCUSDT", "63990")
    report = sweep_paper_triggers()
    assert (report.filled, report.batch_fallbacks) == (1, 1)  # the fallback is counted, not silent
    assert PendingOrder.objects.get(kind="take_profit").status == "cancelled"
    fallback = ExecutionEvent.objects.get(kind="sweep.batch_fallback")
    assert fallback.account_id == paper_account.pk and "RuntimeError: boom" in fallback.data["error"]


def test_batched_and_per_order_fills_book_the_same_numbers(market, monkeypatch):
    from execution.services.paper import batch_fills

    batched, single = PaperAccountFactory(), PaperAccountFactory()
    _stop_out(market, batched)
    market.set_price("BTCUSDT", "63990")
    sweep_paper_triggers()
    market.set_price("BTCUSDT", "65000")
    _stop_out(market, single)
    market.set_price("BTCUSDT", "63990")
    monkeypatch.setattr(batch_fills, "fill_account_batch", lambda *a, **k: 1 / 0)
    sweep_paper_triggers()

    def booked(account):
        trade = Trade.objects.get(account=account, reason="stop_loss")
        position = Position.objects.get(account=account)
        account.refresh_from_db()
        legs = sorted(PendingOrder.objects.filter(account=account).values_list("kind", "status"))
        events = sorted(
            ExecutionEvent.objects.filter(account=account)
            .exclude(kind="sweep.batch_fallback")
            .values_list("kind", flat=True)
        )
        return (
            trade.price,
            trade.fee,
            trade.realized_pnl,
            position.status,
            position.realized_pnl,
            position.fees_paid,
            account.paper_realized_pnl,
            legs,
            events,
        )

    assert booked(batched) == booked(single)


def test_a_quiet_sweep_costs_the_same_queries_for_many_pending_orders(market):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def quiet_sweep_queries() -> int:
        cache.clear()
        sweep_paper_triggers()  # warm: candles, funding marker, marking
        with CaptureQueriesContext(connection) as captured:
            sweep_paper_triggers()
        return len(captured.captured_queries)

    open_long(PaperAccountFactory(paper_balance=Decimal("100000")), stop_loss="60000", take_profit="70000")
    few = quiet_sweep_queries()
    for _ in range(10):
        open_long(PaperAccountFactory(paper_balance=Decimal("100000")), stop_loss="60000", take_profit="70000")
    assert quiet_sweep_queries() == few


@pytest.mark.parametrize(("claimed_seconds_ago", "refilled"), [(20, True), (5, False)])
def test_a_dead_workers_claims_are_refilled_within_a_few_sweeps(market, paper_account, claimed_seconds_ago, refilled):
    """Issue #10, defect 13: claims of a killed worker wait PAPER_RECLAIM_SECONDS (3 sweeps by
    default, 15 s), not two minutes; a fresher claim is left to the worker that holds it."""
    from django.utils import timezone

    open_long(paper_account, take_profit="70000", stop_loss="64000")
    market.set_price("BTCUSDT", "63990")
    claimed_at = timezone.now() - timedelta(seconds=claimed_seconds_ago)
    PendingOrder.objects.filter(kind="stop_loss").update(status="triggered", triggered_at=claimed_at)  # a dead claim
    report = sweep_paper_triggers()
    assert (report.filled == 1) is refilled
    assert PendingOrder.objects.get(kind="stop_loss").status == ("filled" if refilled else "triggered")


def test_a_paper_intent_left_in_flight_by_a_stopped_process_is_cancelled(market, paper_account):
    """Review finding: it held its reserved margin for ever."""
    from django.utils import timezone

    stale = Trade.objects.create(
        account=paper_account,
        symbol="BTCUSDT",
        side="BUY",
        requested_quantity=Decimal("0.1"),
        quantity=Decimal("0.1"),
        leverage=5,
        reserved_margin=Decimal("1300"),
        client_order_id="x1-stale",
    )
    Trade.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    young = open_long(paper_account).trade  # filled: untouched
    assert sweep_paper_triggers().stale_intents == 1
    stale.refresh_from_db()
    assert (stale.status, stale.error_code) == ("cancelled", "STALE_INTENT")
    assert ExecutionEvent.objects.filter(kind="trade.cancelled", subject_id=stale.pk).exists()
    young.refresh_from_db()
    assert young.status == "filled"
