"""Review of the sharded sweep (issue 17, perfsweep): defects a fresh-eyes review proved, each
with the test that reproduced it (from the review's worktree, unchanged in substance)."""

import itertools
from collections import deque
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache
from django.utils import timezone

from execution import tasks
from execution.models import PendingOrder, Position
from execution.services.health import check_paper_sweep
from execution.services.paper.sweep import sweep_paper_triggers
from execution.services.paper.symbols import shard_of
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- the beat's fan-out


def test_under_load_the_fan_out_starves_every_shard_but_the_first(settings):
    """Celery semantics modelled: one FIFO queue, prefetch 1 (CELERY_WORKER_PREFETCH_MULTIPLIER),
    a message past its `expires` is discarded when a worker takes it. One worker, 2 shards, each
    shard sweep taking 1.2 intervals (a 1M-pending shard on a busy box): the real beat task
    enqueued the shards in the same order every beat, so shard 1's message had always expired
    by the time the worker was free, and only shard 0 ever ran."""
    settings.PAPER_SWEEP_SHARDS = 2
    interval = settings.PAPER_SWEEP_SECONDS
    clock = 0.0
    queue: deque[tuple[float, tuple[int, int], float]] = deque()

    def enqueue(args, expires):
        queue.append((clock, args, expires))

    ran: list[int] = []
    worker_free_at = 0.0
    with mock.patch.object(tasks.sweep_paper_shard, "apply_async", side_effect=enqueue):
        for beat in range(40):
            clock = beat * interval
            tasks.sweep_paper_triggers.apply()  # the beat's message, run at once (fan-out is fast)
            while queue and worker_free_at <= clock + interval:
                start = max(worker_free_at, queue[0][0])
                sent, args, expires = queue.popleft()
                if start > sent + expires:
                    continue  # expired: Celery revokes it without running
                ran.append(args[0])
                worker_free_at = start + 1.2 * interval
    assert set(ran) == {0, 1}, f"shards run: {sorted(set(ran))} (shard runs: {len(ran)})"


def test_the_health_check_is_green_while_a_shard_never_runs(settings, market):
    settings.PAPER_SWEEP_SHARDS = 2
    mark = market.exchange.symbols["BTCUSDT"].mark
    account = PaperAccountFactory()
    position = Position.objects.create(
        account=account,
        symbol="BTCUSDT",
        side="LONG",
        quantity=Decimal("1"),
        entry_price=mark,
        leverage=2,
        margin=mark / 2,
    )
    PendingOrder.objects.create(
        account=account,
        position=position,
        symbol="BTCUSDT",
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal("1.05")).quantize(Decimal("0.0001")),
        client_order_id="r-sl",
    )
    stuck = shard_of("BTCUSDT", 2)
    tasks.sweep_paper_shard(1 - stuck, 2)  # only the other shard runs
    assert PendingOrder.objects.get(client_order_id="r-sl").status == "pending"  # crossed, never swept
    assert not check_paper_sweep(timezone.now())["ok"], "readiness says the sweep is healthy"


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


# --------------------------------------------------------------------------- leases and heartbeats


def crossed_stop(symbol, market):
    """A paper stop already crossed by the simulator's mark (the next sweep of its shard fills it)."""
    mark = market.exchange.symbols[symbol].mark
    account = PaperAccountFactory()
    position = Position.objects.create(
        account=account, symbol=symbol, side="LONG", quantity=Decimal("1"), entry_price=mark, leverage=2, margin=mark
    )
    return PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal("1.05")).quantize(Decimal("0.0001")),
        client_order_id=f"c-{symbol}",
    )


def test_a_running_shard_is_neither_queued_again_nor_swept_twice(settings, market):
    from execution.models import Heartbeat
    from execution.services.paper.shards import release_lease, take_lease

    settings.PAPER_SWEEP_SHARDS = 2
    stop = crossed_stop("BTCUSDT", market)
    busy = shard_of("BTCUSDT", 2)
    token = take_lease(busy, 2)  # another worker is sweeping BTCUSDT's shard
    assert token is not None and take_lease(busy, 2) is None

    with mock.patch.object(tasks.sweep_paper_shard, "apply_async") as send:
        assert tasks.sweep_paper_triggers.apply().get() == {"queued": 1, "running": 1}
    assert [c.args[0] for c in send.call_args_list] == [(1 - busy, 2)]
    assert "skipped" in tasks.sweep_paper_shard(busy, 2)  # a second message of the running shard
    assert PendingOrder.objects.get(pk=stop.pk).status == "pending"
    assert not Heartbeat.objects.filter(name=f"paper_sweep:{busy}/2").exists()

    release_lease(busy, 2, token)
    assert tasks.sweep_paper_shard(busy, 2)["filled"] == 1
    assert Heartbeat.objects.filter(name=f"paper_sweep:{busy}/2").exists()
    assert take_lease(busy, 2) is not None  # released after the sweep


def test_a_failed_sweep_releases_its_lease(settings, market):
    from execution.services.paper.shards import take_lease

    with mock.patch.object(tasks, "sweep", side_effect=RuntimeError("boom")), pytest.raises(RuntimeError):
        tasks.sweep_paper_shard(0, 2)
    assert take_lease(0, 2) is not None


def test_a_dead_workers_lease_lapses_with_its_claims(settings):
    """A worker killed mid-sweep never releases its lease: it lapses after PAPER_RECLAIM_SECONDS
    (in whole seconds, at least one: the Redis cache truncates timeouts), when its claims do."""
    import time

    from execution.services.paper.shards import lease_seconds, take_lease

    settings.PAPER_RECLAIM_SECONDS = 0.2
    assert lease_seconds() == 1
    assert take_lease(1, 2) is not None and take_lease(1, 2) is None
    time.sleep(1.1)
    assert take_lease(1, 2) is not None


def test_a_release_never_frees_another_sweeps_lease():
    from django.core.cache import cache as the_cache

    from execution.services.paper.shards import lease_key, release_lease, take_lease

    mine = take_lease(0, 2)
    the_cache.set(lease_key(0, 2), "another sweep's", timeout=60)  # mine lapsed; another took it
    release_lease(0, 2, mine)
    assert the_cache.get(lease_key(0, 2)) == "another sweep's"


def test_each_shard_has_its_own_heartbeat_and_readiness_needs_every_one(settings, market):
    from datetime import timedelta

    from execution.models import Heartbeat

    settings.PAPER_SWEEP_SHARDS = 3
    assert check_paper_sweep(timezone.now())["error"] == (
        "paper_sweep:0/3 has never run; paper_sweep:1/3 has never run; paper_sweep:2/3 has never run"
    )
    for shard in range(3):
        tasks.sweep_paper_shard(shard, 3)
    assert sorted(Heartbeat.objects.values_list("name", flat=True)) == [f"paper_sweep:{k}/3" for k in range(3)]
    check = check_paper_sweep(timezone.now())
    assert (check["ok"], check["shards"], check["late_shards"]) == (True, 3, 0)

    Heartbeat.objects.filter(name="paper_sweep:1/3").update(beat_at=timezone.now() - timedelta(minutes=5))
    check = check_paper_sweep(timezone.now())
    assert (check["ok"], check["late_shards"]) == (False, 1)
    assert check["error"].startswith("paper_sweep:1/3 last ran 300 s ago")


def test_with_one_shard_the_heartbeat_keeps_its_name(settings, market):
    from execution.models import Heartbeat

    settings.PAPER_SWEEP_SHARDS = 1
    tasks.sweep_paper_triggers.apply()
    assert list(Heartbeat.objects.values_list("name", flat=True)) == ["paper_sweep"]
    assert check_paper_sweep(timezone.now())["ok"]


def test_the_fan_out_puts_the_shard_swept_longest_ago_first(settings):
    from execution.models import Heartbeat
    from execution.services.paper.shards import fan_out_order

    now = timezone.now()
    for shard, age in ((0, 1), (1, 9), (3, 5)):  # shard 2 has never been swept
        Heartbeat.objects.create(name=f"paper_sweep:{shard}/4", beat_at=now - timedelta(seconds=age))
    Heartbeat.objects.create(name="paper_sweep:0/2", beat_at=now - timedelta(hours=1))  # another N's
    assert fan_out_order(4) == [2, 1, 3, 0]


def simulate_fan_out(
    settings, *, shards: int, workers: int, duration: float, beats: int = 60
) -> dict[int, list[float]]:
    """The beat, the queue and `workers` worker processes over `beats` intervals (Celery's rules
    as in the test above), each shard sweep taking `duration` intervals and holding its lease
    from its start to its end in simulated time: the start times of each shard's sweeps."""
    from execution.models import Heartbeat
    from execution.services.health import record_heartbeat, sweep_heartbeat
    from execution.services.paper.shards import release_lease, take_lease

    settings.PAPER_SWEEP_SHARDS = shards
    base = timezone.now()
    interval = settings.PAPER_SWEEP_SECONDS
    queue: deque[tuple[float, tuple[int, int], float]] = deque()
    clock = 0.0
    free_at = [0.0] * workers
    running: dict[int, tuple[int, str, float]] = {}  # worker -> (shard, lease token, end)
    starts: dict[int, list[float]] = {shard: [] for shard in range(shards)}

    def finish_runs_ended_by(moment: float) -> None:
        for worker, (shard, token, end) in list(running.items()):
            if end <= moment:
                record_heartbeat(sweep_heartbeat(shard, shards))
                Heartbeat.objects.filter(name=sweep_heartbeat(shard, shards)).update(
                    beat_at=base + timedelta(seconds=end)
                )  # the heartbeat at the simulated time
                release_lease(shard, shards, token)
                del running[worker]

    def enqueue(args, expires):
        queue.append((clock, args, expires))

    with mock.patch.object(tasks.sweep_paper_shard, "apply_async", side_effect=enqueue):
        for beat in range(beats):
            clock = beat * interval
            finish_runs_ended_by(clock)
            tasks.sweep_paper_triggers.apply()
            while queue:
                worker = min(range(workers), key=lambda w: free_at[w])
                start = max(free_at[worker], queue[0][0])
                if start >= clock + interval:
                    break  # the next beat comes first
                finish_runs_ended_by(start)
                sent, (shard, _n), expires = queue.popleft()
                if start > sent + expires:
                    continue  # expired
                token = take_lease(shard, shards)
                if token is None:
                    continue  # the shard is running: the message returns at once
                running[worker] = (shard, token, start + duration * interval)
                free_at[worker] = start + duration * interval
                starts[shard].append(start / interval)
    return starts


@pytest.mark.parametrize(
    ("shards", "workers", "duration"),
    [(2, 1, 1.2), (3, 1, 1.2), (4, 2, 1.5), (4, 1, 0.9), (8, 3, 2.5), (3, 4, 0.5)],
)
def test_every_shard_is_swept_in_turn_however_loaded(settings, shards, workers, duration):
    """Whatever the load, no shard waits much longer than its fair turn: about shards x duration
    / workers intervals when the workers cannot keep up, one interval when they can. (A plain
    rotation by one shard per beat failed this: out of step with workers that finish between
    beats, it made some shards wait 6 intervals where 3.6 were their turn.)"""
    starts = simulate_fan_out(settings, shards=shards, workers=workers, duration=duration)
    fair = max(1.0, shards * duration / workers)
    for shard, times in starts.items():
        assert times, f"shard {shard} never ran"
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert times[0] <= fair + 1 and max(gaps) <= fair + 1, (shard, times)


# --------------------------------------------------------------------------- the price reaction


def test_a_price_reaction_lists_the_batchs_symbols_only(market):
    """The reaction (every second, for the few symbols whose price moved) ran the symbol lists
    of every symbol with work to know which of its symbols need a last price."""
    from execution.services.paper import sweep as sweep_module
    from tests.test_price_readers import feed

    stop = crossed_stop("BTCUSDT", market)
    PendingOrder.objects.filter(pk=stop.pk).update(working_type="CONTRACT_PRICE")
    crossed_stop("ETHUSDT", market)  # another symbol with work, not in the batch
    feed(market, "BTCUSDT")  # marks only: this order follows the last price
    with mock.patch.object(sweep_module, "paper_symbols", side_effect=AssertionError("lists every symbol")):
        assert sweep_module.react_to_prices({"BTCUSDT"}).triggered == 0
        feed(market, "BTCUSDT", last=True)
        assert sweep_module.react_to_prices({"BTCUSDT"}).filled == 1
    assert PendingOrder.objects.get(pk=stop.pk).status == "filled"
    assert PendingOrder.objects.get(symbol="ETHUSDT").status == "pending"


def test_the_contract_symbols_among_a_batch(market):
    from execution.services.paper.symbols import contract_symbols_among
    from tests.factories import LiveV1AccountFactory

    def contract_stop(account, symbol, status="pending"):
        return PendingOrder.objects.create(
            account=account,
            symbol=symbol,
            kind="stop_loss",
            side="SELL",
            working_type="CONTRACT_PRICE",
            trigger_price=Decimal("1"),
            status=status,
            client_order_id=f"k-{account.pk}-{symbol}-{status}",
        )

    paper, live = PaperAccountFactory(), LiveV1AccountFactory()
    contract_stop(paper, "BTCUSDT")
    contract_stop(paper, "SOLUSDT")  # not in the batch
    contract_stop(live, "ETHUSDT")  # a live account's
    contract_stop(paper, "ASTERUSDT", status="filled")
    crossed_stop("ETHUSDT", market)  # a paper MARK_PRICE order
    assert contract_symbols_among({"BTCUSDT", "ETHUSDT", "ASTERUSDT", "XRPUSDT"}) == {"BTCUSDT"}
    assert contract_symbols_among(set()) == frozenset()


# --------------------------------------------------------------------------- the index migration


@pytest.mark.django_db(transaction=True)
def test_the_sweep_indexes_are_built_concurrently_on_postgresql_and_plainly_elsewhere():
    """A plain CREATE INDEX on the pending orders and positions of a running service blocks every
    write to them (orders, sweeps) for the whole build."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.test.utils import CaptureQueriesContext

    names = {"pendingorder_contract_symbols", "position_liquidation_lookup"}

    def indexes() -> set[str]:
        with connection.cursor() as cursor:
            return {
                name
                for table in ("execution_pendingorder", "execution_position")
                for name in connection.introspection.get_constraints(cursor, table)
            } & names

    executor = MigrationExecutor(connection)
    executor.migrate([("execution", "0013_parity")])
    assert indexes() == set()
    executor.loader.build_graph()
    with CaptureQueriesContext(connection) as captured:
        executor.migrate([("execution", "0014_sweep_indexes")])
    assert indexes() == names
    creates = [q["sql"] for q in captured.captured_queries if "CREATE INDEX" in q["sql"]]
    assert len(creates) == 2
    concurrently = connection.vendor == "postgresql"
    assert all(("CONCURRENTLY" in sql) == concurrently for sql in creates), creates
