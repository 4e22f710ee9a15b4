"""Review of the sharded sweep (issue 17, perfsweep): defects a fresh-eyes review proved, each
with the test that reproduced it (from the review's worktree, unchanged in substance)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from execution.models import PendingOrder, Position
from execution.services.paper.sweep import sweep_paper_triggers
from execution.services.paper.symbols import shard_of
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- stale claims


def stale_triggered_without_position(account, symbol, mark):
    order = PendingOrder.objects.create(
        account=account,
        symbol=symbol,
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal("1.05")).quantize(Decimal("0.0001")),
        client_order_id=f"stale-{symbol}",
    )
    old = timezone.now() - timedelta(hours=1)
    PendingOrder.objects.filter(pk=order.pk).update(status="triggered", triggered_at=old)
    return order


def open_position(account, symbol, mark):
    Position.objects.create(
        account=account,
        symbol=symbol,
        side="LONG",
        quantity=Decimal("1"),
        entry_price=mark,
        leverage=2,
        margin=mark / 2,
    )


@pytest.mark.parametrize("shards", [1, 2])
def test_a_stale_claim_is_resolved_whatever_the_shard_count(market, shards):
    """An order left `triggered` by a dead worker was re-claimed by the whole sweep but never by
    the sharded sweep when its symbol had no other work in its shard (the re-claim was filtered
    by the shard's symbol list, and skipped when that list was empty)."""
    cache.clear()
    account = PaperAccountFactory()
    assert shard_of("BTCUSDT", 2) != shard_of("ETHUSDT", 2)
    stale = stale_triggered_without_position(account, "BTCUSDT", market.exchange.symbols["BTCUSDT"].mark)
    open_position(account, "ETHUSDT", market.exchange.symbols["ETHUSDT"].mark)  # other work, other shard
    for shard in range(shards):
        sweep_paper_triggers(shard=shard, shards=shards)
    stale.refresh_from_db()
    assert stale.status == "cancelled", f"shards={shards}: left {stale.status!r}"


def test_a_shard_re_claims_its_own_stale_orders_only(market):
    """Each stale order is re-claimed by the shard of its symbol, never by another: with nothing
    else listed anywhere (no pending order, no position), the whole sweep and each shard alike."""
    account = PaperAccountFactory()
    btc = stale_triggered_without_position(account, "BTCUSDT", market.exchange.symbols["BTCUSDT"].mark)
    eth = stale_triggered_without_position(account, "ETHUSDT", market.exchange.symbols["ETHUSDT"].mark)
    btc_shard = shard_of("BTCUSDT", 2)

    report = sweep_paper_triggers(shard=btc_shard, shards=2)

    assert (report.symbols, report.triggered, report.cancelled) == (0, 1, 1)
    btc.refresh_from_db()
    eth.refresh_from_db()
    assert (btc.status, eth.status) == ("cancelled", "triggered")
    assert sweep_paper_triggers(shard=1 - btc_shard, shards=2).cancelled == 1
    eth.refresh_from_db()
    assert eth.status == "cancelled"


def test_the_whole_sweep_re_claims_a_stale_order_when_nothing_else_is_listed(market):
    stale = stale_triggered_without_position(PaperAccountFactory(), "SOLUSDT", market.exchange.symbols["SOLUSDT"].mark)
    report = sweep_paper_triggers()
    assert (report.symbols, report.triggered) == (0, 1)
    stale.refresh_from_db()
    assert stale.status == "cancelled"
