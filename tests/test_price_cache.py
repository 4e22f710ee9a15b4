"""The price cache: both backends, event-time ordering, refusal of bad input, the readers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache

from execution.aster.streams.frames import LastPriceUpdate, MarkPriceUpdate
from execution.models import PriceCacheEntry
from execution.services import price_cache

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(params=["db", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, settings):
    """Each test runs against the table and against Redis."""
    if request.param == "db":
        settings.REDIS_URL = ""
    cache.clear()  # the Django cache shares the Redis database: a clean slate
    if request.param == "redis":
        price_cache._redis().delete(price_cache.REDIS_INDEX, *price_cache._redis().keys(price_cache.REDIS_PREFIX + "*"))
    yield request.param


def mark(symbol="BTCUSDT", price="65000.1", *, at=0, index="65001", rate="0.0001", next_funding=0):
    return MarkPriceUpdate(
        symbol=symbol,
        mark_price=Decimal(price),
        index_price=Decimal(index) if index else None,
        funding_rate=Decimal(rate) if rate else None,
        next_funding_time_ms=next_funding or NOW_MS + 3_600_000,
        event_time_ms=NOW_MS + at,
    )


def last(symbol="BTCUSDT", price="65000.5", *, at=0):
    return LastPriceUpdate(symbol=symbol, price=Decimal(price), event_time_ms=NOW_MS + at)


def test_marks_are_stored_and_read_back(backend):
    changed = price_cache.store_marks([mark(), mark("ETHUSDT", "3000")], received_at=NOW)
    assert changed == {"BTCUSDT", "ETHUSDT"}
    entry = price_cache.cached_prices(["BTCUSDT"])["BTCUSDT"]
    assert entry.mark_price == Decimal("65000.1") and entry.index_price == Decimal("65001")
    assert entry.funding_rate == Decimal("0.0001") and entry.next_funding_time_ms == NOW_MS + 3_600_000
    assert entry.event_time_ms == NOW_MS and entry.last_price is None and entry.received_at == NOW
    assert set(price_cache.cached_prices()) == {"BTCUSDT", "ETHUSDT"}


def test_an_older_event_never_overwrites_a_newer_price(backend):
    price_cache.store_marks([mark(price="65000", at=2000)], received_at=NOW)
    assert price_cache.store_marks([mark(price="60000", at=1000)], received_at=NOW) == set()
    assert price_cache.store_marks([mark(price="61000", at=2000)], received_at=NOW) == set()  # same time: dropped
    assert price_cache.cached_prices()["BTCUSDT"].mark_price == Decimal("65000")
    assert price_cache.store_marks([mark(price="66000", at=3000)], received_at=NOW) == {"BTCUSDT"}
    assert price_cache.cached_prices()["BTCUSDT"].mark_price == Decimal("66000")


def test_a_newer_event_at_the_same_price_is_written_but_not_reported_changed(backend):
    price_cache.store_marks([mark(price="65000.10")], received_at=NOW)
    assert price_cache.store_marks([mark(price="65000.1", at=1000)], received_at=NOW) == set()
    assert price_cache.cached_prices()["BTCUSDT"].event_time_ms == NOW_MS + 1000


def test_a_batch_repeating_a_symbol_keeps_the_newest(backend):
    changed = price_cache.store_marks(
        [mark(price="2", at=2000), mark(price="3", at=3000), mark(price="1")], received_at=NOW
    )
    assert changed == {"BTCUSDT"}
    assert price_cache.cached_prices()["BTCUSDT"].mark_price == Decimal("3")


def test_last_prices_have_their_own_event_time(backend):
    price_cache.store_last_prices([last(price="100", at=5000)], received_at=NOW)  # before any mark
    price_cache.store_marks([mark(price="101")], received_at=NOW)
    assert price_cache.store_last_prices([last(price="99", at=4000)], received_at=NOW) == set()
    entry = price_cache.cached_prices()["BTCUSDT"]
    assert (entry.mark_price, entry.last_price) == (Decimal("101"), Decimal("100"))
    assert (entry.event_time_ms, entry.last_event_time_ms) == (NOW_MS, NOW_MS + 5000)
    assert price_cache.store_last_prices([last(price="98", at=6000)], received_at=NOW) == {"BTCUSDT"}


def test_a_mark_without_index_or_funding_keeps_the_cached_ones(backend):
    price_cache.store_marks([mark()], received_at=NOW)
    price_cache.store_marks([mark(price="1", at=1000, index="", rate="")], received_at=NOW)
    entry = price_cache.cached_prices()["BTCUSDT"]
    assert entry.index_price == Decimal("65001") and entry.funding_rate == Decimal("0.0001")


@pytest.mark.parametrize(
    "bad",
    [
        mark(price="0"),
        mark(price="-1"),
        mark(price="NaN"),
        mark(price="Infinity"),
        mark(price="1E+18"),  # more than the column holds: would fail the whole batch
        mark(index="-5"),
        mark(rate="NaN"),
        mark(symbol="btc-usdt"),
        mark(at=-NOW_MS),  # event time 0
        mark(at=3_600_000),  # an hour in the future would pin the price
        last(price="0"),  # the wrong kind for store_marks
        "BTCUSDT 65000",
    ],
)
def test_malformed_updates_are_refused_counted_and_write_nothing(backend, bad):
    before = price_cache.rejected_updates
    assert price_cache.store_marks([bad], received_at=NOW) == set()
    assert price_cache.rejected_updates == before + 1
    assert price_cache.cached_prices() == {}


def test_one_bad_update_does_not_hide_the_others(backend):
    assert price_cache.store_marks([mark("ETHUSDT", "0"), mark()], received_at=NOW) == {"BTCUSDT"}
    assert set(price_cache.cached_prices()) == {"BTCUSDT"}


def test_readings_say_how_old_a_price_is(backend, settings):
    settings.EXECUTION_STALE_PRICE_SECONDS = 30
    price_cache.store_marks([mark(), mark("ETHUSDT", "3000", at=-31_000)], received_at=NOW)
    price_cache.store_last_prices([last()], received_at=NOW)
    readings = price_cache.mark_readings(now=NOW + timedelta(seconds=2))
    assert readings["BTCUSDT"].value == Decimal("65000.1") and readings["BTCUSDT"].age_seconds == pytest.approx(2)
    assert readings["BTCUSDT"].fresh and readings["BTCUSDT"].source == "stream"
    assert not readings["ETHUSDT"].fresh and readings["ETHUSDT"].age_seconds == pytest.approx(33)
    assert price_cache.last_readings(now=NOW)["BTCUSDT"].value == Decimal("65000.5")
    assert price_cache.mark_price("XRPUSDT", now=NOW) is None
    assert price_cache.mark_price("BTCUSDT", now=NOW + timedelta(seconds=31)).fresh is False


def test_the_table_is_written_in_one_statement_per_batch(settings, django_assert_max_num_queries):
    settings.REDIS_URL = ""
    updates = [mark(f"S{i}USDT", str(100 + i)) for i in range(50)]
    with django_assert_max_num_queries(2):  # the old prices (for `changed`), then one upsert
        assert len(price_cache.store_marks(updates, received_at=NOW)) == 50
    assert PriceCacheEntry.objects.count() == 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("use_redis", [False, pytest.param(True, marks=pytest.mark.redis)])
def test_racing_writers_leave_the_newest_price(settings, use_redis):
    """Four writers send the same 200 events in different orders: the cache ends at the newest."""
    import random
    import threading

    from django.db import connection

    if not use_redis:
        settings.REDIS_URL = ""
    cache.clear()
    events = [mark(price=str(1000 + t), at=t) for t in range(200)]
    barrier = threading.Barrier(4)
    errors = []

    def write(seed: int) -> None:
        order = events[:]
        random.Random(seed).shuffle(order)
        try:
            barrier.wait()
            for start in range(0, 200, 10):
                price_cache.store_marks(order[start : start + 10], received_at=NOW)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entry = price_cache.cached_prices()["BTCUSDT"]
    assert (entry.mark_price, entry.event_time_ms) == (Decimal("1199"), NOW_MS + 199)
