"""TP/SL triggers: the exchange's rule, the search for crossed orders, and claiming them.

The search is one index range probe per (symbol, kind, side) (PostgreSQL: LATERAL over the
probes; elsewhere an OR of the same ranges), so its cost follows the orders it finds, not
the table. Claiming is exactly once across concurrent sweeps: the candidates still `pending`
are held with FOR UPDATE SKIP LOCKED and moved to `triggered` in one audited statement
(`accounts.audit.claim_transition`); a second sweep skips the held rows and finds the rest
no longer pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from accounts.audit import claim_transition
from execution.models import PendingOrder, PendingOrderKind, PendingOrderStatus, WorkingType
from execution.services.paper.prices import Candle, SymbolPrices
from execution.services.paper.symbols import shard_of


def crossed_q(low: Decimal, high: Decimal) -> Q:
    """Orders whose trigger the price touched while moving within [low, high] (exchange rules)."""
    return (
        Q(kind=PendingOrderKind.STOP_LOSS, side="SELL", trigger_price__gte=low)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="SELL", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.STOP_LOSS, side="BUY", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="BUY", trigger_price__gte=low)
    )


class TriggerOrder(Protocol):
    """What the trigger rule reads of an order (a PendingOrder, or a search's row)."""

    @property
    def kind(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def trigger_price(self) -> Decimal: ...
    @property
    def working_type(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class Candidate(NamedTuple):
    """A row of the trigger search (a tuple: thousands of them cost nothing to build)."""

    pk: int
    symbol: str
    kind: str
    side: str
    trigger_price: Decimal
    working_type: str
    created_at: datetime


def is_crossed(order: TriggerOrder, price: Decimal) -> bool:
    """A SELL stop triggers at or below its price, a SELL take-profit at or above; BUY mirrors."""
    sell = order.side == "SELL"
    if order.kind == PendingOrderKind.STOP_LOSS:
        return price <= order.trigger_price if sell else price >= order.trigger_price
    return price >= order.trigger_price if sell else price <= order.trigger_price


def is_triggered(order: TriggerOrder, entry: SymbolPrices) -> bool:
    """The exchange's rule for this order: its working type's price now, or within a completed
    minute candle that started after the order was created."""
    if order.working_type == WorkingType.CONTRACT_PRICE and (entry.last_missing or entry.last is None):
        # Never judged on the mark in place of a last price it does not have (also when the
        # order arrived after its caller chose which symbols need last prices).
        return False
    if is_crossed(order, entry.price(order.working_type)):
        return True
    return any(crossed_in_candle(order, candle) for candle in entry.candles(order.working_type))


def crossed_in_candle(order: TriggerOrder, candle: Candle) -> bool:
    """The candle part of `is_triggered`: a candle that started after the order was created and
    whose range reached its trigger."""
    return candle.open_time >= order.created_at and (is_crossed(order, candle.low) or is_crossed(order, candle.high))


# The open end of a one-sided range: above any trigger price a money field can hold.
NO_CEILING = Decimal("1e20")


def trigger_probes(prices: dict[str, SymbolPrices]) -> list[tuple[str, str, str, Decimal, Decimal]]:
    """One index range per (symbol, kind, side): (symbol, kind, side, low, high) such that the
    orders crossed by prices within the symbol's widest range [low, high] have a trigger
    price in it (the exchange's rule, as in `crossed_q`)."""
    stop, take = str(PendingOrderKind.STOP_LOSS.value), str(PendingOrderKind.TAKE_PROFIT.value)
    probes: list[tuple[str, str, str, Decimal, Decimal]] = []
    for symbol in sorted(prices):
        low, high = prices[symbol].bounds()
        probes += [
            (symbol, stop, "SELL", low, NO_CEILING),
            (symbol, take, "SELL", Decimal("0"), high),
            (symbol, stop, "BUY", Decimal("0"), high),
            (symbol, take, "BUY", low, NO_CEILING),
        ]
    return probes


# One index range probe per (symbol, kind, side) on the partial index `pendingorder_trigger_lookup`
# (LATERAL: a nested loop over the probes, whatever the table's size); the account is looked at
# only for the few rows the probes return (MATERIALIZED: not once per probe). The statuses are
# literals so that the planner can match the partial indexes also with generic (prepared) plans.
TRIGGER_SEARCH_SQL = """
    WITH candidates AS MATERIALIZED (
        SELECT o.id, o.account_id, o.symbol, o.kind, o.side, o.trigger_price, o.working_type, o.created_at
        FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::numeric[], %s::numeric[])
             AS p(symbol, kind, side, low, high)
        CROSS JOIN LATERAL (
            SELECT o.id, o.account_id, o.symbol, o.kind, o.side, o.trigger_price, o.working_type, o.created_at
            FROM execution_pendingorder o
            WHERE o.status = 'pending' AND o.symbol = p.symbol AND o.kind = p.kind AND o.side = p.side
              AND o.trigger_price >= p.low AND o.trigger_price <= p.high
            OFFSET 0  -- never pulled up into a join over the whole table: one probe per row of p
        ) o
    )
    SELECT c.id, c.symbol, c.kind, c.side, c.trigger_price, c.working_type, c.created_at
    FROM candidates c
    WHERE EXISTS (SELECT 1 FROM accounts_account a WHERE a.id = c.account_id AND a.is_paper_trading)
"""


def find_triggered(prices: dict[str, SymbolPrices]) -> list[int]:
    """Two steps: a coarse range search per (symbol, kind, side) with the widest price range of
    the symbol, then the exact rule per order in Python on the few candidates."""
    if not prices:
        return []
    candidates = _candidates_sql(prices) if connection.vendor == "postgresql" else _candidates_orm(prices)
    return [order.pk for order in candidates if is_triggered(order, prices[order.symbol])]


def _candidates_sql(prices: dict[str, SymbolPrices]) -> list[Candidate]:
    columns: list[list[Any]] = [list(column) for column in zip(*trigger_probes(prices), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(TRIGGER_SEARCH_SQL, columns)
        return [Candidate(*row) for row in cursor.fetchall()]


def _candidates_orm(prices: dict[str, SymbolPrices]) -> list[PendingOrder]:
    """The portable search (SQLite): an OR of the same ranges, by 100 symbols."""
    found: list[PendingOrder] = []
    symbols = sorted(prices)
    for start in range(0, len(symbols), 100):
        condition = Q()
        for symbol in symbols[start : start + 100]:
            low, high = prices[symbol].bounds()
            condition |= Q(symbol=symbol) & crossed_q(low, high)
        found += PendingOrder.objects.filter(
            condition, status=PendingOrderStatus.PENDING, account__is_paper_trading=True
        ).only("id", "symbol", "kind", "side", "trigger_price", "working_type", "created_at")
    return found


def claim(
    candidate_ids: Iterable[int], now: datetime, *, reclaim_stale: bool = True, shard: int = 0, shards: int = 1
) -> list[int]:
    """pending -> triggered, exactly once across concurrent sweeps (`claim_transition`: rows held
    by another sweep are skipped, rows it moved no longer match); also (`reclaim_stale`)
    re-claims orders left `triggered` by a worker that died before filling them, after
    PAPER_RECLAIM_SECONDS (no status change: a new deadline), those of `shard` of `shards`
    (`symbols.shard_of`)."""
    candidate_ids = list(candidate_ids)
    with transaction.atomic():
        fresh = [
            pk
            for pk, _account_id in claim_transition(
                PendingOrder,
                pks=candidate_ids,
                from_status=PendingOrderStatus.PENDING,
                to_status=PendingOrderStatus.TRIGGERED,
                now=now,
                values={"triggered_at": now},
            )
        ]
        stale = _stale_claims(now, shard=shard, shards=shards) if reclaim_stale else []
        if stale:
            PendingOrder.objects.filter(pk__in=stale).update(triggered_at=now, updated_at=now)
    return fresh + stale


def _stale_claims(now: datetime, *, shard: int, shards: int) -> list[int]:
    """Orders left `triggered` past PAPER_RECLAIM_SECONDS, of this shard, held (inside the
    caller's transaction). By the order's own symbol, not the shard's symbol lists: a stale
    order is neither pending nor, often, in a position's symbol, so no list has its symbol."""
    stale = PendingOrder.objects.filter(
        status=PendingOrderStatus.TRIGGERED,
        triggered_at__lt=now - timedelta(seconds=settings.PAPER_RECLAIM_SECONDS),
        account__is_paper_trading=True,
    )
    # `of=("self",)`: the orders' rows only. Locking the accounts' rows too would make the fills
    # of other shards (which lock their accounts) wait for this claim, or be skipped by it.
    held = stale.select_for_update(skip_locked=True, of=("self",))
    if shards <= 1:
        return list(held.values_list("pk", flat=True))
    # Listed without a lock first, then only this shard's rows held: holding every shard's
    # stale rows would make a concurrent re-claim by another shard skip its own.
    mine = [pk for pk, symbol in stale.values_list("pk", "symbol") if shard_of(symbol, shards) == shard]
    return list(held.filter(pk__in=mine).values_list("pk", flat=True)) if mine else []
