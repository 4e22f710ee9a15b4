"""The shadow of a TP/SL fill: when and at what price paper's trigger rule would have fired, and
what paper would have filled at.

One home for each rule, paper's own:
- WHEN: `paper.triggers.is_triggered` on what paper sees of the leg's symbol: the cached price of
  the leg's working type (the mark, or the last price for CONTRACT_PRICE) and the completed
  1-minute candles that started after the leg was created. The time is the crossing price's
  exchange event time, or, for a candle (a wick the cached price never showed), the candle's
  close: paper's rule only sees a candle once it is complete (its sweep reads completed
  candles), so that is the earliest paper could have fired on it. Two crossings: the earlier.
- PRICE: `paper.fill_plan.trigger_fill_price` on a book read where paper reads it (at the
  reaction, `market_data.book_covering`): the walk's VWAP, no better than the trigger when only a
  candle crossed. Without a book the shadow is the price paper's rule fired at (the crossing
  price; the trigger price for a candle), and `note` says so.

Network: none on the user-data event path (`record_leg_fill`, run by the user-stream applier
after its commit): cached prices, the candles the sweep cached this minute, no book. The
completion step run by the market stream (`complete_trigger_shadows`, where paper's own reaction
reads books too) may read klines (at most one attempt per symbol and minute in this process,
cached for the sweep as well) and one book per completed record.

Two orders of arrival, both handled:
- paper's rule already fires when the fill arrives on the user-data stream: the record is
  complete at once (without a book: noted);
- the fill arrives first (the exchange fills at once, the mark stream publishes every second, a
  candle completes at the minute's end): the record waits (`shadow_at` null) and the market
  stream completes it when paper's rule fires.
A record still waiting after AWAIT_LIMIT is left as it is (the report counts it without delay).

`trigger_delay_ms` = paper's trigger time - the exchange's fill time (positive: paper later);
`trigger_price_diff` = live fill price - the price paper's rule fired at;
`book_age_ms` = paper's trigger time - the book's exchange time (stale beyond
PARITY_MAX_BOOK_AGE_MS either way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from execution.aster.replies import OrderBook
from execution.aster.streams.user_events import OrderTradeUpdate
from execution.models import (
    ParityKind,
    ParityRecord,
    PendingOrder,
    PendingOrderKind,
    Trade,
    TradeReason,
    WorkingType,
)
from execution.services import price_cache
from execution.services.market_data import book_covering
from execution.services.paper import prices as paper_prices
from execution.services.paper.fill_plan import trigger_fill_price
from execution.services.paper.prices import Candle, SymbolPrices
from execution.services.paper.triggers import crossed_in_candle, is_crossed, is_triggered
from execution.services.parity.arithmetic import paper_fee, slippage_bps
from execution.services.parity.recording import failed, save_record
from execution.services.position_math import q

logger = logging.getLogger(__name__)
LEG_REASONS = frozenset({TradeReason.TAKE_PROFIT, TradeReason.STOP_LOSS})
AWAIT_LIMIT = timedelta(hours=1)
FEE_ASSETS = ("", "USDT")
CANDLE = timedelta(minutes=1)
NO_BOOK_EVENT_PATH = "no book (user-data stream path): shadow at paper's trigger price"
NO_BOOK_FAILED = "no book: the read failed; shadow at paper's trigger price"
NOTE_LIMIT = 200

# (symbol, mark candles?) -> the minute of this process's last kline attempt: `candles` caches
# only successes, and a venue that is down must not cost a REST attempt per waiting record and batch.
_kline_attempts: dict[tuple[str, bool], int] = {}


@dataclass(frozen=True)
class PaperTrigger:
    """When paper's rule fires for a leg, at what price, and what it saw (for the fill rule)."""

    at: datetime
    price: Decimal  # the crossing price, or the trigger price for a candle
    entry: SymbolPrices
    candle: Candle | None  # the candle it fired on (None: the cached price)


def record_leg_fill(*, account_id: int, event: OrderTradeUpdate, trade: Trade | None) -> ParityRecord | None:
    """After a leg's execution was booked (`trade`: its closing trade), record its shadow. Never
    raises; does nothing for any other execution. No network call (the user-data event path)."""
    if trade is None or trade.reason not in LEG_REASONS:
        return None
    try:
        leg = PendingOrder.objects.filter(account_id=account_id, client_order_id=event.client_order_id).first()
        if leg is None:
            return None
        live_ms = event.trade_time_ms or event.event_time_ms
        live_fee = event.commission if event.commission_asset in FEE_ASSETS else Decimal("0")
        fields: dict[str, object] = {
            "account_id": account_id,
            "trade_id": trade.pk,
            "pending_order_id": leg.pk,
            "source_key": f"{leg.client_order_id}:{event.trade_id or event.cumulative_quantity}",
            "symbol": leg.symbol,
            "kind": ParityKind.TAKE_PROFIT if leg.kind == PendingOrderKind.TAKE_PROFIT else ParityKind.STOP_LOSS,
            "side": leg.side,
            "quantity": event.last_quantity,
            "live_price": event.last_price,
            "live_fee": live_fee,
            "fee_diff": Decimal("0"),  # until paper's side is known (the report leaves it out meanwhile)
            "live_at": datetime.fromtimestamp(live_ms / 1000, tz=UTC),
        }
        trigger = _reading(leg)
        if trigger is not None:
            fields.update(shadow_fields(fields, leg, trigger, book=None, note=NO_BOOK_EVENT_PATH))
    except Exception:
        failed("leg", "tp/sl")
        return None
    return save_record(**fields)


def paper_trigger(leg: PendingOrder, *, now: datetime, read_klines: bool) -> PaperTrigger | None:
    """Whether paper's rule (`is_triggered`) fires for `leg` on the cached price and the completed
    candles, and if so when (the earlier crossing) and at what price. `read_klines`: the candles
    may be read over REST (off the event path); otherwise only those cached this minute."""
    cached = price_cache.cached_prices([leg.symbol]).get(leg.symbol)
    if cached is None:
        return None
    mark_type = leg.working_type == WorkingType.MARK_PRICE
    price, price_ms = (
        (cached.mark_price, cached.event_time_ms) if mark_type else (cached.last_price, cached.last_event_time_ms)
    )
    if price is None:
        return None  # never judged on another price in place of its own (as paper)
    candles = _candles(leg.symbol, mark=mark_type, now=now, read_klines=read_klines)
    entry = SymbolPrices(
        mark=cached.mark_price if cached.mark_price is not None else price,  # unused by a CONTRACT_PRICE leg
        last=None if mark_type else price,
        mark_candles=candles if mark_type else [],
        last_candles=[] if mark_type else candles,
    )
    if not is_triggered(leg, entry):
        return None
    crossings: list[tuple[datetime, Decimal, Candle | None]] = []
    if is_crossed(leg, price):
        crossings.append((datetime.fromtimestamp(price_ms / 1000, tz=UTC), price, None))
    crossings += [(c.open_time + CANDLE, leg.trigger_price, c) for c in candles if crossed_in_candle(leg, c)]
    at, fired_at, candle = min(crossings, key=lambda crossing: crossing[0])
    return PaperTrigger(at=at, price=fired_at, entry=entry, candle=candle)


def shadow_fields(
    live: dict[str, object], leg: PendingOrder, trigger: PaperTrigger, *, book: OrderBook | None, note: str
) -> dict[str, object]:
    """Paper's side of a leg fill: its trigger time, and its fill on `book` by paper's leg fill
    rule (without a usable book: the price its rule fired at, with `note`)."""
    quantity, price, live_at = live["quantity"], live["live_price"], live["live_at"]
    assert isinstance(quantity, Decimal) and isinstance(price, Decimal) and isinstance(live_at, datetime)
    live_fee = live["live_fee"]
    assert isinstance(live_fee, Decimal)
    notes = [f"paper fired on the 1m candle of {trigger.candle.open_time:%H:%M} UTC"] if trigger.candle else []
    shadow_price, fields = trigger.price, {}
    if book is not None and quantity > 0:
        filled, walked = trigger_fill_price(order=leg, book=book, quantity=quantity, entry=trigger.entry)
        age_ms = round(trigger.at.timestamp() * 1000) - book.time_ms
        fields = {"book_age_ms": age_ms, "stale": abs(age_ms) > settings.PARITY_MAX_BOOK_AGE_MS}
        if walked is not None:
            shadow_price = walked
        else:
            notes.append(f"the book holds {filled} of {quantity}: shadow at paper's trigger price")
    elif note:
        notes.append(note)
    shadow_fee = paper_fee(quantity, shadow_price)
    return fields | {
        "shadow_price": shadow_price,
        "shadow_fee": shadow_fee,
        "fee_diff": q(live_fee - shadow_fee),
        "slippage_bps": slippage_bps(str(live["side"]), price, shadow_price),
        "shadow_at": trigger.at,
        "trigger_delay_ms": round((trigger.at - live_at).total_seconds() * 1000),
        "trigger_price_diff": q(price - trigger.price),
        "note": "; ".join(notes)[:NOTE_LIMIT],
    }


def complete_trigger_shadows(symbols: Iterable[str]) -> int:
    """Complete the leg records still waiting for paper's trigger in these symbols, from the
    prices just stored and the completed candles. Never raises; returns how many were completed."""
    try:
        return _complete(set(symbols))
    except Exception:
        failed("trigger", "tp/sl")
        return 0


def _complete(symbols: set[str]) -> int:
    if not symbols:
        return 0
    now = timezone.now()
    # The waiting records are few (and on the partial index `parity_awaiting_trigger`); the moved
    # symbols may be the whole market: filtered here rather than in a long IN list every second.
    waiting = ParityRecord.objects.filter(
        kind__in=(ParityKind.TAKE_PROFIT, ParityKind.STOP_LOSS),
        shadow_at__isnull=True,
        created_at__gte=now - AWAIT_LIMIT,
    ).select_related("pending_order")
    completed = 0
    for record in waiting:
        leg = record.pending_order
        if leg is None or record.symbol not in symbols:
            continue
        trigger = paper_trigger(leg, now=now, read_klines=True)
        if trigger is None:
            continue
        book, note = _book(leg, record.quantity)
        live: dict[str, object] = {
            "quantity": record.quantity,
            "live_price": record.live_price,
            "live_at": record.live_at,
            "live_fee": record.live_fee,
            "side": record.side,
        }
        completed += ParityRecord.objects.filter(pk=record.pk, shadow_at__isnull=True).update(
            **shadow_fields(live, leg, trigger, book=book, note=note)
        )
    return completed


def _reading(leg: PendingOrder) -> PaperTrigger | None:
    """Paper's trigger on the event path: cached prices and candles only."""
    return paper_trigger(leg, now=timezone.now(), read_klines=False)


def _book(leg: PendingOrder, quantity: Decimal) -> tuple[OrderBook | None, str]:
    """The book paper's reaction would read for this fill (paper's own read, deep enough)."""
    try:
        return book_covering(leg.symbol, leg.side, max(quantity, Decimal("0.000001"))), ""
    except Exception as exc:
        logger.warning("parity: no %s book for the shadow of %s: %s", leg.symbol, leg.client_order_id, exc)
        return None, NO_BOOK_FAILED


def _candles(symbol: str, *, mark: bool, now: datetime, read_klines: bool) -> list[Candle]:
    """The completed candles paper's sweep judges on: over REST at most once per symbol and
    minute when `read_klines`, else only those already cached this minute."""
    minute = int(now.timestamp() // 60)
    if read_klines and _kline_attempts.get((symbol, mark)) != minute:
        _kline_attempts[(symbol, mark)] = minute
        return paper_prices.candles(symbol, mark=mark, now=now)
    return paper_prices.cached_candles(symbol, mark=mark, now=now) or []
