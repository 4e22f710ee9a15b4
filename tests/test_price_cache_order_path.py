"""The order path reads the price cache: a fresh cached mark replaces the premiumIndex round
trip; a stale one falls back to REST (and a stale REST reply is refused: STALE_PRICE). A live
account's balance is reused for LIVE_BALANCE_CACHE_SECONDS without letting orders share margin."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis
from django.utils import timezone

from execution.aster.streams.frames import MarkPriceUpdate
from execution.exceptions import RiskCheckFailed
from execution.models import Trade
from execution.services import ExecutionService, price_cache
from execution.services.market_data import market_snapshot
from tests.factories import LiveV1AccountFactory

pytestmark = pytest.mark.django_db


def feed(symbol: str, mark: Decimal, *, age_seconds: float = 0.0) -> None:
    update = MarkPriceUpdate(
        symbol=symbol,
        mark_price=mark,
        index_price=None,
        funding_rate=None,
        next_funding_time_ms=0,
        event_time_ms=int((time.time() - age_seconds) * 1000),
    )
    price_cache.store_marks([update], received_at=timezone.now())


def test_a_fresh_cached_mark_replaces_the_premium_index_call(market, paper_account):
    mark = market.exchange.symbols["BTCUSDT"].mark
    feed("BTCUSDT", mark)
    snapshot = market_snapshot("BTCUSDT")
    assert (snapshot.mark_price, snapshot.source) == (mark, "stream")
    result = ExecutionService(paper_account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
    )
    assert result.trade.status == "filled"
    assert market.calls_to("/fapi/v1/premiumIndex") == 0
    assert market.calls_to("/fapi/v1/depth") == 1  # the paper fill still walks the book at order time


def test_a_stale_cached_mark_falls_back_to_rest(market, paper_account, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    feed("BTCUSDT", Decimal("1"), age_seconds=6)  # an absurd price: used, it would fail the order
    snapshot = market_snapshot("BTCUSDT")
    assert snapshot.source == "rest" and snapshot.mark_price == market.exchange.symbols["BTCUSDT"].mark
    ExecutionService(paper_account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert market.calls_to("/fapi/v1/premiumIndex") == 2


def test_stale_cache_and_stale_rest_refuse_the_order_with_stale_price(market, paper_account, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 5
    feed("BTCUSDT", market.exchange.symbols["BTCUSDT"].mark, age_seconds=6)
    market.stale_ms = 60_000
    with pytest.raises(RiskCheckFailed) as refused:
        ExecutionService(paper_account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert refused.value.code == "STALE_PRICE"
    assert not Trade.objects.exists()


def test_an_unreadable_cache_costs_a_rest_call_not_the_order(market, paper_account, monkeypatch):
    def unreachable(symbol, *, now=None):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(price_cache, "mark_price", unreachable)
    assert market_snapshot("BTCUSDT").source == "rest"


def test_a_cached_live_balance_never_lets_orders_share_margin(sim, settings):
    """Orders one after another on one balance read: each sees the margin of the fills booked
    since that read, so the service refuses the order the wallet cannot hold (the exchange
    never has to)."""
    settings.LIVE_BALANCE_CACHE_SECONDS = 60
    sim.exchange.accounts["demo-v1"].balance = Decimal("300")  # two 0.01 BTC orders at 5x, not three
    account = LiveV1AccountFactory(cooldown_seconds=0)
    service = ExecutionService(account)
    outcomes = []
    for _ in range(3):
        try:
            service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
            outcomes.append("filled")
        except RiskCheckFailed as exc:
            outcomes.append(exc.code)
    assert outcomes == ["filled", "filled", "INSUFFICIENT_MARGIN"]
    balance_reads = [path for method, path in sim.server.request_log if path.endswith("/balance")]
    assert len(balance_reads) == 1
    assert len(sim.exchange.accounts["demo-v1"].orders) == 2


def test_live_balance_caching_can_be_turned_off(sim, settings):
    settings.LIVE_BALANCE_CACHE_SECONDS = 0
    account = LiveV1AccountFactory(cooldown_seconds=0)
    service = ExecutionService(account)
    for _ in range(2):
        service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert len([p for _, p in sim.server.request_log if p.endswith("/balance")]) == 2


def test_margin_spent_outside_the_service_is_refused_by_the_exchange_and_drops_the_cached_balance(sim, settings):
    """What a cached balance can miss (a withdrawal, a manual trade) the exchange refuses; the
    refusal drops the cached balance, so the next order is judged on a fresh one."""
    from execution.exceptions import ExchangeRejected

    settings.LIVE_BALANCE_CACHE_SECONDS = 60
    remote = sim.exchange.accounts["demo-v1"]
    account = LiveV1AccountFactory(cooldown_seconds=0)
    service = ExecutionService(account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    remote.balance = Decimal("150")  # withdrawn elsewhere: the cached balance does not know
    with pytest.raises(ExchangeRejected):
        service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    with pytest.raises(RiskCheckFailed) as refused:
        service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert refused.value.code == "INSUFFICIENT_MARGIN"
    assert len([p for _, p in sim.server.request_log if p.endswith("/balance")]) == 2
