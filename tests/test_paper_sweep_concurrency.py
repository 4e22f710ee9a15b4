"""Concurrent sweeps on PostgreSQL: every triggered order is claimed and filled exactly once."""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection

from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services.paper.sweep import sweep_paper_triggers
from tests.factories import PaperAccountFactory

SYMBOLS = {"BTCUSDT": "0.01", "ETHUSDT": "0.1", "SOLUSDT": "1", "ASTERUSDT": "100"}


def protected_long(account, symbol, quantity, mark):
    position = Position.objects.create(
        account=account,
        symbol=symbol,
        side="LONG",
        quantity=Decimal(quantity),
        entry_price=mark * Decimal("1.1"),
        leverage=2,
        margin=Decimal("1"),
    )
    stop = PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal("1.05")).quantize(Decimal("0.0001")),
        client_order_id=f"p{position.pk}-sl",
    )
    take = PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="take_profit",
        side="SELL",
        trigger_price=(mark * Decimal("1.5")).quantize(Decimal("0.0001")),
        client_order_id=f"p{position.pk}-tp",
        sibling=stop,
    )
    stop.sibling = take
    stop.save(update_fields=["sibling"])


def run_concurrently(sweeps: list[dict]) -> list:
    """Each sweep (its keyword arguments) in its own thread and connection, started at once."""
    barrier = threading.Barrier(len(sweeps))
    reports, errors = [], []

    def sweep(kwargs: dict) -> None:
        try:
            barrier.wait()
            reports.append(sweep_paper_triggers(**kwargs))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep, args=(kwargs,)) for kwargs in sweeps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return reports


def seed_200_crossed_stops(market) -> None:
    cache.clear()
    for _ in range(50):
        account = PaperAccountFactory()
        for symbol, quantity in SYMBOLS.items():
            protected_long(account, symbol, quantity, market.exchange.symbols[symbol].mark)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_concurrent_sweeps_fill_200_triggered_stops_exactly_once(market):
    seed_200_crossed_stops(market)
    reports = run_concurrently([{}] * 4)
    assert_filled_exactly_once(reports)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_sweeps_on_many_workers_fill_every_triggered_stop_exactly_once(market, shards):
    """Issue 17: the sweep split in shards by symbol, each shard swept by several workers at
    once (and one whole sweep besides): every crossed stop is filled once, none is missed."""
    seed_200_crossed_stops(market)
    sweeps = [{"shard": i % shards, "shards": shards} for i in range(2 * shards)] + [{}]
    reports = run_concurrently(sweeps)
    assert_filled_exactly_once(reports)


def assert_filled_exactly_once(reports: list) -> None:
    assert sum(r.filled for r in reports) == 200
    fills = Trade.objects.filter(reason="stop_loss")
    assert fills.count() == 200
    assert max(Counter(fills.values_list("position_id", flat=True)).values()) == 1
    assert PendingOrder.objects.filter(kind="stop_loss", status="filled").count() == 200
    assert PendingOrder.objects.filter(kind="take_profit", status="cancelled").count() == 200
    assert Position.objects.filter(status="closed").count() == 200
    assert ExecutionEvent.objects.filter(kind="pendingorder.triggered").count() == 200
