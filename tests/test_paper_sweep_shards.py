"""The sweep's parts (issue 17): the symbol lists, the searches and the claim (on PostgreSQL the
raw SQL, elsewhere the portable fallback: the same tests), and the sweep split in shards."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone

from accounts.audit import InvalidTransition, claim_transition
from execution.models import ExecutionEvent, PendingOrder, Position
from execution.services import ExecutionService
from execution.services.paper.sweep import sweep_paper_triggers
from execution.services.paper.symbols import paper_symbols, shard_of
from tests.factories import LiveV1AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ASTERUSDT"]


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()
    yield
    cache.clear()


def protected_long(account, symbol, market, *, stop_ratio="0.95", working_type="MARK_PRICE"):
    mark = market.exchange.symbols[symbol].mark
    position = Position.objects.create(
        account=account,
        symbol=symbol,
        side="LONG",
        quantity=Decimal("1"),
        entry_price=mark,
        leverage=2,
        margin=mark / 2,
        liquidation_price=(mark / 2).quantize(Decimal("0.01")),
    )
    return PendingOrder.objects.create(
        account=account,
        position=position,
        symbol=symbol,
        kind="stop_loss",
        side="SELL",
        trigger_price=(mark * Decimal(stop_ratio)).quantize(Decimal("0.0001")),
        working_type=working_type,
        client_order_id=f"t{position.pk}-sl",
    )


def test_a_symbol_belongs_to_one_stable_shard():
    assert [shard_of(s, 2) for s in SYMBOLS] == [1, 0, 0, 0]  # crc32: the same in every process
    for shards in (1, 2, 3, 7):
        for symbol in SYMBOLS:
            assert [shard_of(symbol, shards) == i for i in range(shards)].count(True) == 1


def test_symbol_lists_hold_paper_symbols_only(market):
    paper = PaperAccountFactory()
    protected_long(paper, "BTCUSDT", market)
    protected_long(paper, "ETHUSDT", market, working_type="CONTRACT_PRICE")
    live = LiveV1AccountFactory()
    protected_long(live, "SOLUSDT", market)  # a live account's resting order: not the sweep's
    lists = paper_symbols()
    assert lists.pending == {"BTCUSDT", "ETHUSDT"}
    assert lists.contract == {"ETHUSDT"}
    assert lists.positions == {"BTCUSDT", "ETHUSDT"}
    assert lists.shard(1, 2).all == {"BTCUSDT"} and lists.shard(0, 2).all == {"ETHUSDT"}


def test_a_live_accounts_crossed_order_is_never_claimed_by_the_paper_sweep(market):
    live_stop = protected_long(LiveV1AccountFactory(), "BTCUSDT", market, stop_ratio="1.05")
    paper_stop = protected_long(PaperAccountFactory(), "BTCUSDT", market, stop_ratio="1.05")
    report = sweep_paper_triggers()
    assert (report.triggered, report.filled) == (1, 1)
    live_stop.refresh_from_db()
    paper_stop.refresh_from_db()
    assert (live_stop.status, paper_stop.status) == ("pending", "filled")


def test_only_crossed_orders_are_found_at_the_edges_of_the_ranges(market):
    account = PaperAccountFactory()
    at = protected_long(account, "BTCUSDT", market, stop_ratio="1")  # the stop at the mark: crossed
    below = protected_long(PaperAccountFactory(), "BTCUSDT", market, stop_ratio="0.9999")
    report = sweep_paper_triggers()
    assert report.triggered == 1
    assert PendingOrder.objects.get(pk=at.pk).status == "filled"
    assert PendingOrder.objects.get(pk=below.pk).status == "pending"


def test_a_liquidation_is_found_by_the_range_search(market):
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    stop = protected_long(account, "ETHUSDT", market, stop_ratio="0.1")
    Position.objects.filter(pk=stop.position_id).update(
        liquidation_price=market.exchange.symbols["ETHUSDT"].mark * Decimal("1.01")
    )
    report = sweep_paper_triggers()
    assert report.liquidated == 1
    assert Position.objects.get(pk=stop.position_id).status == "closed"


def test_each_shard_sweeps_its_own_symbols_and_all_shards_make_the_whole_sweep(market):
    stops = {symbol: protected_long(PaperAccountFactory(), symbol, market, stop_ratio="1.05") for symbol in SYMBOLS}
    first = sweep_paper_triggers(shard=1, shards=2)
    assert (first.symbols, first.filled) == (1, 1)  # BTCUSDT only
    assert PendingOrder.objects.get(pk=stops["BTCUSDT"].pk).status == "filled"
    assert PendingOrder.objects.filter(status="pending").count() == 3
    second = sweep_paper_triggers(shard=0, shards=2)
    assert (second.symbols, second.filled) == (3, 3)
    assert not PendingOrder.objects.filter(status="pending").exists()


def test_the_beat_task_enqueues_one_task_per_shard_starting_one_further_each_beat(settings, market):
    from execution import tasks

    settings.PAPER_SWEEP_SHARDS = 3
    with mock.patch.object(tasks.sweep_paper_shard, "apply_async") as send:
        results = [tasks.sweep_paper_triggers.apply().get() for _beat in range(4)]
    assert results == [{"queued": 3, "running": 0}] * 4
    sent = [c.args[0] for c in send.call_args_list]
    assert [[shard for shard, _n in sent[i : i + 3]] for i in range(0, 12, 3)] == [
        [0, 1, 2],
        [1, 2, 0],
        [2, 0, 1],
        [0, 1, 2],
    ]
    assert {n for _shard, n in sent} == {3}
    assert {c.kwargs["expires"] for c in send.call_args_list} == {settings.PAPER_SWEEP_SECONDS}


def test_the_beat_task_called_as_a_function_sweeps_everything_here(settings, market):
    from execution import tasks

    settings.PAPER_SWEEP_SHARDS = 3
    for symbol in SYMBOLS:
        protected_long(PaperAccountFactory(), symbol, market, stop_ratio="1.05")
    assert tasks.sweep_paper_triggers()["filled"] == 4
    assert tasks.sweep_paper_shard(0, 1)["filled"] == 0


def test_claim_transition_moves_each_row_once_with_one_event_each(market):
    stops = [protected_long(PaperAccountFactory(), s, market) for s in SYMBOLS[:3]]
    ids = [s.pk for s in stops]
    now = timezone.now()
    moved = claim_transition(
        PendingOrder, pks=ids, from_status="pending", to_status="triggered", now=now, values={"triggered_at": now}
    )
    assert sorted(moved) == sorted((s.pk, s.account_id) for s in stops)
    again = claim_transition(PendingOrder, pks=ids, from_status="pending", to_status="triggered", now=now)
    assert again == []  # no longer pending: nothing moves twice
    events = ExecutionEvent.objects.filter(kind="pendingorder.triggered")
    assert sorted(events.values_list("subject_id", "from_status", "to_status")) == [
        (pk, "pending", "triggered") for pk in sorted(ids)
    ]
    assert set(PendingOrder.objects.filter(pk__in=ids).values_list("status", "triggered_at")) == {("triggered", now)}


def test_claim_transition_refuses_a_move_the_table_forbids_and_writes_nothing(market):
    stop = protected_long(PaperAccountFactory(), "BTCUSDT", market)
    with pytest.raises(InvalidTransition):
        claim_transition(PendingOrder, pks=[stop.pk], from_status="filled", to_status="triggered", now=timezone.now())
    stop.refresh_from_db()
    assert stop.status == "pending" and not ExecutionEvent.objects.exists()


def test_a_sweep_through_the_service_still_fills_a_real_protected_order(market):
    account = PaperAccountFactory()
    ExecutionService(account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.1", leverage=5, take_profit="70000", stop_loss="64000"
    )
    market.set_price("BTCUSDT", "63990")
    report = sweep_paper_triggers(shard=shard_of("BTCUSDT", 4), shards=4)
    assert (report.triggered, report.filled) == (1, 1)
    assert PendingOrder.objects.get(kind="take_profit").status == "cancelled"


def statements(captured) -> list[str]:
    """The statements a block ran, without transaction bookkeeping (COPY is not captured)."""
    skip = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(skip)]


@pytest.mark.postgres
def test_a_quiet_sweep_is_five_statements(market):
    """The in-flight intents, the symbol lists (one statement), the liquidation and trigger
    searches and the dead workers' claims; funding is read only when a funding time moved."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for symbol in SYMBOLS:
        protected_long(PaperAccountFactory(), symbol, market)
    sweep_paper_triggers()  # warm: funding markers, marking
    with CaptureQueriesContext(connection) as captured:
        assert sweep_paper_triggers().triggered == 0
    assert len(statements(captured)) == 5


@pytest.mark.postgres
def test_fills_cost_a_fixed_number_of_statements_per_account(market):
    """Claim: one statement; the claimed orders: one read; then per account: the lock, its
    positions, its orders, the trades' keys, the orders, positions and account written (and two
    COPYs, trades and events): seven statements whatever its number of fills."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def fill_sweep(accounts: int) -> int:
        for _ in range(accounts):
            account = PaperAccountFactory()
            for symbol in SYMBOLS:
                protected_long(account, symbol, market)
        sweep_paper_triggers()  # warm: funding markers, marking
        PendingOrder.objects.filter(status="pending").update(trigger_price=F("trigger_price") * Decimal("1.2"))
        with CaptureQueriesContext(connection) as captured:
            assert sweep_paper_triggers().filled == 4 * accounts
        return len(statements(captured))

    one, three = fill_sweep(1), fill_sweep(3)
    assert one == 5 + 2 + 7
    assert three - one == 2 * 7


def test_events_written_as_tuples_read_back_like_the_orms(market):
    """The tuple path (claim, batched fills) stores events as the ORM would: the same time,
    the same JSON."""
    from accounts.audit import event_row, insert_event_rows

    account = PaperAccountFactory()
    at = timezone.now()
    insert_event_rows(
        [
            event_row(
                account_id=account.pk,
                kind="position.reduced",
                subject_type="position",
                subject_id=7,
                data={"quantity": Decimal("0.5")},
                at=at,
            )
        ]
    )
    event = ExecutionEvent.objects.get(kind="position.reduced")
    assert (event.created_at, event.data, event.subject_id) == (at, {"quantity": "0.5"}, 7)
    assert ExecutionEvent.objects.filter(created_at__gte=at, created_at__lte=at).count() == 1
