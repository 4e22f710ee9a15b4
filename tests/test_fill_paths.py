"""The two writers of triggered-order fills leave identical rows and events.

The paper sweep books a claimed order either through the batched writer (`batch_fills`, a fixed
number of statements per account) or through the per-order writer (`fills.fill_triggered_order`,
row by row through the ledger). Both book what `fill_plan.plan_trigger_fill` decides. Here
hypothesis draws random scenarios (adds up to whole and partial closes, pairs and lone legs,
books too thin to fill, positions already closed or replaced, crossings seen only in a candle)
and builds each twice, on two accounts; one account's orders go through each writer, and the
positions, trades, protective orders, wallet and audit events must come out the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from accounts.audit import batched_events
from execution.aster.replies import BookLevel, OrderBook
from execution.models import ExecutionEvent, PendingOrder, Position, PositionStatus, Trade
from execution.services.ledger import lock_account, refresh_risk_fields
from execution.services.paper import batch_fills
from execution.services.paper.fills import fill_triggered_order
from execution.services.paper.prices import Candle, SymbolPrices
from tests.factories import PaperAccountFactory

SYMBOL = "BTCUSDT"
_examples = itertools.count()


@dataclass(frozen=True)
class Leg:
    pair: int
    kind: str  # take_profit / stop_loss
    quantity: Decimal | None
    triggered: bool


@dataclass(frozen=True)
class Scenario:
    side: str
    quantity: Decimal
    entry: Decimal
    leverage: int
    legs: tuple[Leg, ...]
    position_state: str  # open, closed (the legs' position closed, none open), replaced (another one open)
    depth_levels: tuple[tuple[Decimal, Decimal], ...]  # (price offset from the entry, quantity)
    mark: Decimal
    candle_only: bool  # the price crossed only within a candle, and is back


@st.composite
def scenarios(draw: Any) -> Scenario:
    quantity = Decimal(draw(st.integers(1, 200))) * Decimal("0.005")
    legs = []
    for pair in range(draw(st.integers(1, 2))):
        kinds = draw(st.sampled_from([("take_profit", "stop_loss"), ("take_profit",), ("stop_loss",)]))
        # None closes the whole position; otherwise a quarter to one and a half times its size.
        share = draw(st.one_of(st.none(), st.integers(1, 6)))
        partial = None if share is None else max(Decimal("0.005"), (quantity * share / 4).quantize(Decimal("0.005")))
        for kind in kinds:
            legs.append(Leg(pair, kind, partial, draw(st.booleans())))
    if not any(leg.triggered for leg in legs):
        legs[0] = Leg(legs[0].pair, legs[0].kind, legs[0].quantity, True)
    levels = draw(
        st.lists(
            st.tuples(
                st.integers(0, 400).map(Decimal), st.integers(1, 120).map(lambda n: Decimal(n) * Decimal("0.01"))
            ),
            min_size=1,
            max_size=5,
        )
    )
    entry = Decimal(draw(st.integers(60000, 70000)))
    return Scenario(
        side=draw(st.sampled_from(["LONG", "SHORT"])),
        quantity=quantity,
        entry=entry,
        leverage=draw(st.integers(1, 25)),
        legs=tuple(legs),
        position_state=draw(st.sampled_from(["open", "open", "open", "closed", "replaced"])),
        depth_levels=tuple(levels),
        mark=entry + Decimal(draw(st.integers(-3000, 3000))),
        candle_only=draw(st.booleans()),
    )


def build(scenario: Scenario, prefix: str, now: Any) -> tuple[Any, list[PendingOrder]]:
    """The account, its positions and protective orders; returns the claimed orders, stops first."""
    account = PaperAccountFactory()
    position = Position(
        account=account,
        symbol=SYMBOL,
        side=scenario.side,
        quantity=scenario.quantity,
        entry_price=scenario.entry,
        leverage=scenario.leverage,
        mark_price=scenario.entry,
    )
    if scenario.position_state != "open":
        position.status, position.quantity, position.closed_at = PositionStatus.CLOSED, Decimal("0"), now
        position.entry_price = scenario.entry
    else:
        refresh_risk_fields(position)
    position.save()
    if scenario.position_state == "replaced":
        other = Position(
            account=account,
            symbol=SYMBOL,
            side=scenario.side,
            quantity=scenario.quantity,
            entry_price=scenario.entry,
            leverage=scenario.leverage,
        )
        refresh_risk_fields(other, mark_price=scenario.entry)
        other.save()
    closing = "SELL" if scenario.side == "LONG" else "BUY"
    sign = 1 if scenario.side == "LONG" else -1
    legs: dict[tuple[int, str], PendingOrder] = {}
    for leg in scenario.legs:
        away = Decimal(500) if leg.kind == "take_profit" else Decimal(-500)
        legs[(leg.pair, leg.kind)] = PendingOrder.objects.create(
            account=account,
            position=position,
            symbol=SYMBOL,
            kind=leg.kind,
            side=closing,
            trigger_price=scenario.entry + sign * away,
            quantity=leg.quantity,
            status="triggered" if leg.triggered else "pending",
            client_order_id=f"{prefix}-{leg.pair}-{leg.kind[:2]}",
            triggered_at=now if leg.triggered else None,
        )
    for pair in {leg.pair for leg in scenario.legs}:
        tp, sl = legs.get((pair, "take_profit")), legs.get((pair, "stop_loss"))
        if tp is not None and sl is not None:
            PendingOrder.objects.filter(pk=tp.pk).update(sibling=sl)
            PendingOrder.objects.filter(pk=sl.pk).update(sibling=tp)
    claimed = PendingOrder.objects.filter(account=account, status="triggered").select_related("position")
    return account, sorted(claimed, key=lambda o: (o.kind != "stop_loss", o.pk))


def market(scenario: Scenario, now: Any) -> tuple[OrderBook, SymbolPrices]:
    bids = tuple(BookLevel(scenario.entry - offset, size) for offset, size in sorted(scenario.depth_levels))
    asks = tuple(BookLevel(scenario.entry + offset, size) for offset, size in sorted(scenario.depth_levels))
    book = OrderBook(symbol=SYMBOL, last_update_id=1, time_ms=0, bids=bids, asks=asks)
    candles = [Candle(now - timedelta(hours=2), scenario.mark - 5000, scenario.mark + 5000)]
    # A mark far from every trigger: the crossing was seen only in the candle.
    mark = scenario.entry if scenario.candle_only else scenario.mark
    return book, SymbolPrices(mark=mark, last=None, mark_candles=candles)


def picture(account: Any, prefix: str) -> dict[str, Any]:
    """Everything the fill wrote, with keys that do not depend on row ids or the account."""
    positions = {p.pk: f"position{i}" for i, p in enumerate(Position.objects.filter(account=account).order_by("pk"))}
    orders = {o.pk: o.client_order_id.removeprefix(prefix) for o in PendingOrder.objects.filter(account=account)}
    trades = {t.pk: t.client_order_id.removeprefix(prefix) for t in Trade.objects.filter(account=account)}
    subjects = {"position": positions, "pendingorder": orders, "trade": trades}
    account.refresh_from_db()
    return {
        "wallet": account.paper_realized_pnl,
        "positions": sorted(
            (
                positions[p.pk],
                p.status,
                p.side,
                p.quantity,
                p.entry_price,
                p.realized_pnl,
                p.fees_paid,
                p.margin,
                p.liquidation_price,
                p.unrealized_pnl,
                p.mark_price,
                p.needs_protection,
                p.closed_at is not None,
            )
            for p in Position.objects.filter(account=account)
        ),
        "orders": sorted(
            (orders[o.pk], o.status, trades.get(o.trade_id), o.error_message, o.closed_at is not None)
            for o in PendingOrder.objects.filter(account=account)
        ),
        "trades": sorted(
            (
                trades[t.pk],
                t.status,
                t.side,
                t.requested_quantity,
                t.quantity,
                t.price,
                t.fee,
                t.realized_pnl,
                t.leverage,
                t.reduce_only,
                t.reason,
                positions.get(t.position_id),
                t.filled_at is not None,
            )
            for t in Trade.objects.filter(account=account)
        ),
        "events": sorted(
            (
                e.kind,
                e.subject_type,
                subjects.get(e.subject_type, {}).get(e.subject_id),
                e.from_status,
                e.to_status,
                e.message,
                sorted((k, str(v)) for k, v in e.data.items()),
            )
            for e in ExecutionEvent.objects.filter(account=account)
        ),
    }


def _named(legs: tuple[Leg, ...], *, state: str = "open", depth: str = "5", candle_only: bool = False) -> Scenario:
    return Scenario(
        side="LONG",
        quantity=Decimal("1"),
        entry=Decimal("65000"),
        leverage=5,
        legs=legs,
        position_state=state,
        depth_levels=((Decimal("0"), Decimal(depth)),),
        mark=Decimal("64000"),
        candle_only=candle_only,
    )


HALF = Decimal("0.5")
PAIR_PARTIAL_STOP = (Leg(0, "take_profit", HALF, False), Leg(0, "stop_loss", HALF, True))
PAIR_WHOLE_STOP = (Leg(0, "take_profit", None, False), Leg(0, "stop_loss", None, True))
TWO_PAIRS = (*PAIR_PARTIAL_STOP, Leg(1, "take_profit", None, False), Leg(1, "stop_loss", None, True))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
@example(scenario=_named(PAIR_PARTIAL_STOP))  # a partial close cancels the sibling only
@example(scenario=_named(PAIR_WHOLE_STOP))  # a whole close cancels every other leg
@example(scenario=_named(TWO_PAIRS))  # a partial then a whole close in one batch
@example(scenario=_named(PAIR_WHOLE_STOP, state="closed"))  # its position is gone: cancelled
@example(scenario=_named(PAIR_WHOLE_STOP, state="replaced"))  # another position is open: cancelled
@example(scenario=_named(PAIR_WHOLE_STOP, depth="0.2"))  # the book is too thin: failed, flagged
@example(scenario=_named(PAIR_PARTIAL_STOP, candle_only=True))  # seen in a candle: no better than the trigger
def test_batched_and_per_order_writers_leave_identical_rows(db, scenario):
    now = timezone.now() + timedelta(minutes=1)  # after every row's opened_at (auto_now_add)
    n = next(_examples)
    with transaction.atomic():
        book, prices = market(scenario, now)
        batched, batched_orders = build(scenario, f"b{n}", now)
        single, single_orders = build(scenario, f"s{n}", now)
        books = {(SYMBOL, o.side): book for o in batched_orders}
        batched_outcomes = batch_fills.fill_account_batch(batched.pk, batched_orders, books, {SYMBOL: prices}, now)
        with transaction.atomic(), batched_events():
            account = lock_account(single.pk)
            single_outcomes = [fill_triggered_order(account, o.pk, book, prices, now) for o in single_orders]
        assert batched_outcomes == single_outcomes
        for outcome in batched_outcomes:
            event(outcome)
        event(f"position {scenario.position_state}")
        assert picture(batched, f"b{n}") == picture(single, f"s{n}")
        transaction.set_rollback(True)  # the next example starts from an empty ledger
