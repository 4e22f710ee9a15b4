"""Review of the market-data stream work (issue 11): defects found, each reproduced here."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from execution.aster.streams.frames import MarkPriceUpdate
from execution.models import PendingOrder, Position
from execution.services import price_cache
from execution.services.paper import sweep
from execution.streams.market import MarketStream
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard


def marks_frame(*items: tuple[str, str, int]) -> str:
    data = [{"e": "markPriceUpdate", "E": e, "s": s, "p": p, "i": p, "r": "0.0001", "T": 0} for s, p, e in items]
    return json.dumps({"stream": "!markPrice@arr@1s", "data": data})


def test_a_future_dated_mark_does_not_silence_its_symbol_in_the_stream() -> None:
    """One frame dated far in the future (refused by the cache) must not become the 'newest seen'
    of its symbol: otherwise every real update after it is dropped as out of order, for as long
    as the bogus time lies ahead (here a day), and the symbol's cached price goes stale."""

    async def scenario() -> MarketStream:
        supervisor = StreamSupervisor(threads=1)
        stream = MarketStream(
            supervisor=supervisor, board=StatusBoard(holder="t:1"), url="ws://127.0.0.1:9", mark_seconds=3600
        )
        stream.known_symbols = frozenset({"BTCUSDT"})
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        stream.on_frame(marks_frame(("BTCUSDT", "100", now_ms + 86_400_000)), now)  # a day ahead
        later = now + timedelta(seconds=1)
        stream.on_frame(marks_frame(("BTCUSDT", "90", now_ms + 1000)), later)  # the real next update
        await supervisor.shutdown()
        return stream

    stream = asyncio.run(scenario())
    pending = stream._pending_marks.get("BTCUSDT")
    assert pending is not None and pending.mark_price == Decimal("90")
    assert stream.counters.drop_reasons.get("out of order", 0) == 0


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def mark(symbol: str = "BTCUSDT", price: str = "65000", *, at: int = 0, next_funding: int = 0) -> MarkPriceUpdate:
    return MarkPriceUpdate(
        symbol=symbol,
        mark_price=Decimal(price),
        index_price=Decimal(price),
        funding_rate=Decimal("0.0001"),
        next_funding_time_ms=next_funding or NOW_MS + 3_600_000,
        event_time_ms=NOW_MS + at,
    )


@pytest.fixture(params=["db", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, settings):
    if request.param == "db":
        settings.REDIS_URL = ""
    cache.clear()
    if request.param == "redis":
        price_cache._redis().delete(
            price_cache.redis_index_key(), *price_cache._redis().keys(price_cache.redis_key("*"))
        )
    return request.param


@pytest.mark.django_db
def test_a_next_funding_time_out_of_range_does_not_fail_the_whole_batch(backend) -> None:
    """A mark whose `T` does not fit the table's bigint column made the one upsert statement of the
    batch fail: no symbol's price was stored (the whole array of the 1 s stream lost)."""
    changed = price_cache.store_marks([mark("BTCUSDT", next_funding=2**63), mark("ETHUSDT", "3000")], received_at=NOW)
    assert "ETHUSDT" in changed
    assert price_cache.cached_prices(["ETHUSDT"])["ETHUSDT"].mark_price == Decimal("3000")


@pytest.mark.django_db
def test_a_mark_dated_ahead_does_not_pin_a_fresh_looking_price(backend, settings) -> None:
    """An update dated 50 s ahead of receipt was accepted (60 s allowed): every real update of
    the next 50 s was 'older' and dropped, while readers saw the pinned price with age 0, fresh,
    and used it for trade decisions (well beyond EXECUTION_STALE_PRICE_SECONDS of real age)."""
    settings.EXECUTION_STALE_PRICE_SECONDS = 30
    price_cache.store_marks([mark(price="100", at=50_000)], received_at=NOW)  # 50 s ahead
    later = NOW + timedelta(seconds=20)
    price_cache.store_marks([mark(price="80", at=20_000)], received_at=later)  # the real price, 20 s on
    reading = price_cache.mark_price("BTCUSDT", now=later)
    assert reading is not None
    assert reading.value == Decimal("80")


@pytest.mark.django_db
def test_a_contract_price_order_is_never_judged_on_the_mark_when_no_last_price_is_known(
    market, paper_account, monkeypatch
) -> None:
    """A CONTRACT_PRICE order placed after the reaction listed the symbols needing last prices
    (but before its trigger search) had no last price and no `last_missing` flag, so
    `SymbolPrices.price` gave it the mark: triggered and filled on the wrong price."""
    mark_price = market.exchange.symbols["BTCUSDT"].mark
    position = Position.objects.create(
        account=paper_account,
        symbol="BTCUSDT",
        side="LONG",
        quantity=Decimal("0.01"),
        entry_price=mark_price * Decimal("1.1"),
        leverage=2,
        margin=Decimal("1"),
    )
    price_cache.store_marks(
        [
            MarkPriceUpdate(
                symbol="BTCUSDT",
                mark_price=mark_price,
                index_price=mark_price,
                funding_rate=Decimal("0.0001"),
                next_funding_time_ms=0,
                event_time_ms=int(time.time() * 1000),
            )
        ],
        received_at=timezone.now(),
    )  # marks only: no last price is known for BTCUSDT

    original = sweep.cached_symbol_prices

    def order_arrives_meanwhile(*args, **kwargs):
        PendingOrder.objects.create(
            account=paper_account,
            position=position,
            symbol="BTCUSDT",
            kind="stop_loss",
            side="SELL",
            working_type="CONTRACT_PRICE",
            trigger_price=(mark_price * Decimal("1.05")).quantize(Decimal("0.0001")),  # crossed by the mark
            client_order_id=f"p{position.pk}-sl",
        )
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "cached_symbol_prices", order_arrives_meanwhile)
    report = sweep.react_to_prices({"BTCUSDT"})
    assert report.triggered == 0
    assert PendingOrder.objects.get(kind="stop_loss").status == "pending"
