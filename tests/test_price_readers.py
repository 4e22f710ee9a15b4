"""The readers of the price cache: the sweep (cache first, REST for stale symbols), the
stream's reaction to prices, and marking every open position (paper and live)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from execution.aster.streams.frames import LastPriceUpdate, MarkPriceUpdate
from execution.models import PendingOrder, Position, PriceCacheEntry, Trade
from execution.services import price_cache
from execution.services.paper.sweep import mark_open_positions, react_to_prices, sweep_paper_triggers
from tests.factories import LiveV1AccountFactory, PaperAccountFactory
from tests.test_paper_sweep_concurrency import protected_long

pytestmark = pytest.mark.django_db

PRICE_PATHS = ("/fapi/v1/premiumIndex", "/fapi/v1/ticker/price", "/fapi/v1/klines", "/fapi/v1/markPriceKlines")


def feed(market, *symbols, age_seconds: float = 0.0, last: bool = False) -> set[str]:
    """What the stream process would write: the market's current marks (and last prices)."""
    event_ms = int((time.time() - age_seconds) * 1000)
    updates = [
        MarkPriceUpdate(
            symbol=s,
            mark_price=market.exchange.symbols[s].mark,
            index_price=market.exchange.symbols[s].price,
            funding_rate=Decimal("0.0001"),
            next_funding_time_ms=market.exchange.next_funding_time_ms(),
            event_time_ms=event_ms,
        )
        for s in symbols
    ]
    changed = price_cache.store_marks(updates, received_at=timezone.now())
    if last:
        lasts = [
            LastPriceUpdate(symbol=s, price=market.exchange.symbols[s].price, event_time_ms=event_ms) for s in symbols
        ]
        changed |= price_cache.store_last_prices(lasts, received_at=timezone.now())
    return changed


def price_calls(market) -> int:
    return sum(market.calls_to(path) for path in PRICE_PATHS)


def protected(account, symbol="BTCUSDT", market=None, quantity="0.01"):
    protected_long(account, symbol, quantity, market.exchange.symbols[symbol].mark)
    return PendingOrder.objects.get(account=account, symbol=symbol, kind="stop_loss")


def test_react_to_prices_fills_a_paper_stop_from_the_cache_with_no_rest_price(market, paper_account):
    stop = protected(paper_account, market=market)  # the stop sits 5 % above the mark: crossed
    assert feed(market, "BTCUSDT") == {"BTCUSDT"}
    report = react_to_prices({"BTCUSDT"})
    assert (report.triggered, report.filled, report.skipped_symbols) == (1, 1, [])
    stop.refresh_from_db()
    assert stop.status == "filled" and stop.trade.reason == "stop_loss"
    assert price_calls(market) == 0  # only the order book is read (at fill time)
    assert market.calls_to("/fapi/v1/depth") >= 1


def test_react_to_prices_skips_symbols_without_a_fresh_cached_price(market, paper_account, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    protected(paper_account, market=market)
    feed(market, "BTCUSDT", age_seconds=6)
    report = react_to_prices({"BTCUSDT", "ETHUSDT"})
    assert report.triggered == 0 and report.skipped_symbols == ["BTCUSDT", "ETHUSDT"]
    assert PendingOrder.objects.get(kind="stop_loss").status == "pending"
    assert len(market.rsps.calls) == 0


def test_react_to_prices_leaves_contract_price_orders_without_a_last_price_to_the_sweep(market, paper_account):
    stop = protected(paper_account, market=market)
    PendingOrder.objects.filter(pk=stop.pk).update(working_type="CONTRACT_PRICE")
    feed(market, "BTCUSDT")  # marks only: the mark crossed, but this order follows the last price
    assert react_to_prices({"BTCUSDT"}).triggered == 0
    feed(market, "BTCUSDT", last=True)
    assert react_to_prices({"BTCUSDT"}).filled == 1
    assert price_calls(market) == 0


def test_the_sweep_uses_fresh_cached_marks_and_polls_no_rest_price(market, paper_account):
    protected(paper_account, market=market)
    feed(market, "BTCUSDT")
    report = sweep_paper_triggers()
    assert report.filled == 1
    assert market.calls_to("/fapi/v1/premiumIndex") == 0 and market.calls_to("/fapi/v1/ticker/price") == 0
    assert market.calls_to("/fapi/v1/markPriceKlines") == 1  # the minute-candle crossing check stays


def test_the_sweep_polls_rest_for_symbols_whose_cached_price_is_stale(market, paper_account, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    protected(paper_account, market=market)
    protected(paper_account, "ETHUSDT", market=market, quantity="0.1")
    feed(market, "BTCUSDT")
    feed(market, "ETHUSDT", age_seconds=30)  # the stream stopped for ETH
    report = sweep_paper_triggers()
    assert report.filled == 2 and report.skipped_symbols == []
    assert market.calls_to("/fapi/v1/premiumIndex") == 1


def test_the_sweep_polls_rest_when_the_cache_is_empty(market, paper_account):
    protected(paper_account, market=market)
    assert sweep_paper_triggers().filled == 1
    assert market.calls_to("/fapi/v1/premiumIndex") == 1


def open_position(account, symbol="BTCUSDT", *, side="LONG", entry="60000", quantity="0.1"):
    return Position.objects.create(
        account=account,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        entry_price=Decimal(entry),
        leverage=5,
        margin=Decimal(entry) * Decimal(quantity) / 5,
    )


def test_mark_open_positions_marks_paper_and_live_positions(market, paper_account):
    live = LiveV1AccountFactory()
    paper_long = open_position(paper_account)
    live_short = open_position(live, side="SHORT", entry="70000")
    feed(market, "BTCUSDT")
    mark = market.exchange.symbols["BTCUSDT"].mark
    now = timezone.now()
    assert mark_open_positions(now=now) == 2
    paper_long.refresh_from_db()
    live_short.refresh_from_db()
    assert paper_long.mark_price == mark and paper_long.unrealized_pnl == (mark - 60000) * Decimal("0.1")
    assert live_short.mark_price == mark and live_short.unrealized_pnl == (70000 - mark) * Decimal("0.1")
    assert live_short.marked_at == now
    assert len(market.rsps.calls) == 0


def test_a_stale_cached_mark_marks_nothing(market, paper_account, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    live = open_position(LiveV1AccountFactory())
    feed(market, "BTCUSDT", age_seconds=6)
    assert mark_open_positions() == 0
    live.refresh_from_db()
    assert live.mark_price is None and live.marked_at is None


@pytest.mark.postgres
def test_mark_open_positions_is_one_statement_whatever_the_number_of_positions(
    market, paper_account, settings, django_assert_num_queries
):
    settings.REDIS_URL = ""  # the table backend: one read of the cache, one UPDATE
    feed(market, "BTCUSDT", "ETHUSDT")
    open_position(paper_account)
    with django_assert_num_queries(2):
        assert mark_open_positions() == 1
    for _ in range(30):
        open_position(LiveV1AccountFactory(), "ETHUSDT", entry="3000", quantity="1")
        open_position(PaperAccountFactory(), "BTCUSDT")
    with django_assert_num_queries(2):
        assert mark_open_positions() == 61
    assert Position.objects.filter(mark_price__isnull=True).count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reactions_and_a_sweep_at_once_fill_each_order_exactly_once(market):
    symbols = {"BTCUSDT": "0.01", "ETHUSDT": "0.1", "SOLUSDT": "1"}
    for _ in range(20):
        account = PaperAccountFactory()
        for symbol, quantity in symbols.items():
            protected_long(account, symbol, quantity, market.exchange.symbols[symbol].mark)
    feed(market, *symbols)
    barrier = threading.Barrier(3)
    reports, errors = [], []

    def run(job) -> None:
        try:
            barrier.wait()
            reports.append(job())
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    jobs = [lambda: react_to_prices(set(symbols)), lambda: react_to_prices(set(symbols)), sweep_paper_triggers]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.filled for r in reports) == 60
    fills = Trade.objects.filter(reason="stop_loss")
    assert fills.count() == 60
    assert max(Counter(fills.values_list("position_id", flat=True)).values()) == 1
    assert PendingOrder.objects.filter(kind="stop_loss", status="filled").count() == 60
    assert market.calls_to("/fapi/v1/premiumIndex") == 0


def test_react_to_prices_with_no_symbols_does_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert react_to_prices(set(), now=timezone.now() - timedelta(seconds=1)).triggered == 0


def test_the_status_api_shows_the_mark_its_age_and_roe_of_a_live_position(market, settings):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    settings.EXECUTION_STALE_PRICE_SECONDS = 30
    live = LiveV1AccountFactory()
    position = open_position(live)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=live.owner).key}")
    status = client.get(f"/api/accounts/{live.pk}/status/").data
    shown = status["open_positions"][0]
    assert shown["marked_at"] is None and shown["mark_age_seconds"] is None and shown["roe"] is None
    assert status["mark_prices"] == {}
    feed(market, "BTCUSDT", age_seconds=2)
    mark_open_positions(now=timezone.now() - timedelta(seconds=40))  # marked, then the stream went quiet
    status = client.get(f"/api/accounts/{live.pk}/status/").data
    shown = status["open_positions"][0]
    mark = market.exchange.symbols["BTCUSDT"].mark
    assert Decimal(shown["mark_price"]) == mark and shown["mark_age_seconds"] >= 40
    position.refresh_from_db()
    expected_roe = position.unrealized_pnl / (position.quantity * mark / 5)
    assert Decimal(shown["roe"]) == expected_roe.quantize(Decimal("0.000001"))
    reading = status["mark_prices"]["BTCUSDT"]
    assert Decimal(reading["value"]) == mark and reading["fresh"] and 1.5 <= reading["age_seconds"] < 30
    assert Decimal(status["unrealized_pnl"]) == position.unrealized_pnl


def test_the_admin_shows_mark_age_and_the_price_cache(admin_client, market, paper_account, settings):
    open_position(paper_account)
    feed(market, "BTCUSDT")
    mark_open_positions()
    page = admin_client.get("/admin/execution/position/").content.decode()
    assert "Mark age" in page and "never marked" not in page
    page = admin_client.get("/admin/execution/pricecacheentry/")
    assert page.status_code == 200
    if not settings.REDIS_URL:  # the table holds the cache only without Redis
        assert "BTCUSDT" in page.content.decode()


@pytest.mark.postgres
@pytest.mark.redis
def test_mark_open_positions_from_redis_is_one_database_statement(market, paper_account, django_assert_num_queries):
    feed(market, "BTCUSDT")
    for _ in range(5):
        open_position(LiveV1AccountFactory())
    with django_assert_num_queries(1):  # the marks come from Redis; one UPDATE joined to them
        assert mark_open_positions() == 5


def test_a_rest_outage_does_not_stop_the_sweep_for_symbols_the_stream_keeps_fresh(
    market, paper_account, settings, monkeypatch
):
    from execution.services.market_data import MarketDataUnavailable
    from execution.services.paper import prices

    def rest_down(*args, **kwargs):
        raise MarketDataUnavailable("premiumIndex: ConnectionError")

    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    protected(paper_account, market=market)
    protected(paper_account, "ETHUSDT", market=market, quantity="0.1")
    feed(market, "BTCUSDT")
    feed(market, "ETHUSDT", age_seconds=30)  # the stream stopped for ETH, and REST is down
    monkeypatch.setattr(prices, "rest_prices", rest_down)
    report = sweep_paper_triggers()
    assert report.filled == 1 and report.skipped_symbols == ["ETHUSDT"]
    assert PendingOrder.objects.get(symbol="ETHUSDT", kind="stop_loss").status == "pending"
    PriceCacheEntry.objects.all().delete()
    cache.clear()
    with pytest.raises(MarketDataUnavailable):  # nothing fresh at all: the sweep fails, visibly
        sweep_paper_triggers()
