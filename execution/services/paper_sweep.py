"""The paper sweep: mark to market, funding, liquidations and TP/SL triggers for paper accounts.

Safe to run many times at once on many workers: every row is claimed exactly once (a
conditional UPDATE under `select_for_update(skip_locked=True)`), and each fill re-checks
its row's status under the account lock before booking anything.

Market data per sweep: one premiumIndex request for every symbol (mark prices), one
ticker/price request when a CONTRACT_PRICE order is pending, 1-minute klines per symbol at
most once a minute (crossings between two sweeps), one fundingRate request per symbol per
funding time, and one order book per symbol that has triggered orders.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Case, DecimalField, F, Min, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.audit import (
    batched_events,
    discard_events_after,
    insert_events,
    pending_event_count,
    record_event,
    transition,
)
from accounts.models import Account
from execution.aster.replies import FundingRate, Kline, OrderBook
from execution.exceptions import ExecutionError
from execution.models import (
    ExecutionEvent,
    FundingPayment,
    PendingOrder,
    PendingOrderKind,
    PendingOrderStatus,
    Position,
    PositionStatus,
    TradeReason,
    WorkingType,
)
from execution.services.adapters.paper import walk_book
from execution.services.batch_fills import fill_account_batch
from execution.services.exchange import public_client
from execution.services.ledger import (
    book_fill,
    close_whole_position,
    lock_account,
    open_position,
    protective_fill_reason,
    reduce_only_trade,
)
from execution.services.market_data import book_covering, fetch, symbol_rules
from execution.services.position_math import funding_payment, q, unrealized_pnl

logger = logging.getLogger(__name__)

STALE_TRIGGERED_AFTER = timedelta(seconds=120)
KLINE_CANDLES = 3  # the current minute and the two before it
FUNDING_LOOKBACK_MS = 8 * 3600 * 1000
ZERO = Decimal("0")
MONEY: DecimalField = DecimalField(max_digits=28, decimal_places=10)


@dataclass(frozen=True)
class Candle:
    open_time: datetime
    low: Decimal
    high: Decimal


@dataclass
class SymbolPrices:
    mark: Decimal
    last: Decimal | None
    next_funding_time_ms: int = 0
    mark_candles: list[Candle] = field(default_factory=list)
    last_candles: list[Candle] = field(default_factory=list)

    def price(self, working_type: str) -> Decimal:
        if working_type == WorkingType.CONTRACT_PRICE and self.last is not None:
            return self.last
        return self.mark


@dataclass
class SweepReport:
    symbols: int = 0
    marked: int = 0
    funding_payments: int = 0
    liquidated: int = 0
    triggered: int = 0
    filled: int = 0
    cancelled: int = 0
    failed: int = 0
    skipped_symbols: list[str] = field(default_factory=list)
    seconds: float = 0.0
    mark_seconds: float = 0.0  # mark to market (at most every PAPER_MARK_SECONDS)
    detect_seconds: float = 0.0  # market data, marking, liquidation and trigger search, claiming
    fill_seconds: float = 0.0  # order books and fills of the claimed orders


# --------------------------------------------------------------------------- entry point


def sweep_paper_triggers(*, now: datetime | None = None) -> SweepReport:
    started = time.perf_counter()
    now = now or timezone.now()
    report = SweepReport()
    pending_symbols, working_types = _pending_symbols()
    position_symbols = set(
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True)
        .order_by()
        .values_list("symbol", flat=True)
        .distinct()
    )
    symbols = pending_symbols | position_symbols
    report.symbols = len(symbols)
    if symbols:
        prices = _prices(symbols, working_types, now, report)
        _add_candles(prices, pending_symbols, position_symbols, working_types, now)
        mark_started = time.perf_counter()
        report.marked = mark_to_market_if_due(prices, now)
        report.mark_seconds = time.perf_counter() - mark_started
        report.funding_payments = settle_funding(prices, now)
        report.liquidated = liquidate_crossed(prices, now)
        _trigger_and_fill(prices, now, report, started)
    report.seconds = time.perf_counter() - started
    report.fill_seconds = report.seconds - report.detect_seconds if report.triggered else 0.0
    return report


def _pending_symbols() -> tuple[set[str], set[str]]:
    rows = (
        PendingOrder.objects.filter(status=PendingOrderStatus.PENDING, account__is_paper_trading=True)
        .order_by()  # the model's ordering would leak into DISTINCT
        .values_list("symbol", "working_type")
        .distinct()
    )
    symbols, working_types = set(), set()
    for symbol, working_type in rows:
        symbols.add(symbol)
        working_types.add(working_type)
    return symbols, working_types


def _prices(symbols: set[str], working_types: set[str], now: datetime, report: SweepReport) -> dict[str, SymbolPrices]:
    client = public_client()
    marks = fetch("premiumIndex", client.premium_indexes)
    lasts = fetch("ticker/price", client.ticker_prices) if WorkingType.CONTRACT_PRICE in working_types else {}
    prices = {}
    for symbol in symbols:
        index = marks.get(symbol)
        if index is None or _stale(index.time_ms, now):
            report.skipped_symbols.append(symbol)  # no fresh mark: nothing triggers on old data
            continue
        last = lasts.get(symbol)
        prices[symbol] = SymbolPrices(
            mark=index.mark_price, last=last.price if last else None, next_funding_time_ms=index.next_funding_time_ms
        )
    if report.skipped_symbols:
        logger.warning("paper sweep skipped symbols without a fresh mark price: %s", sorted(report.skipped_symbols))
    return prices


def _stale(time_ms: int, now: datetime) -> bool:
    return bool(time_ms) and now.timestamp() - time_ms / 1000 > settings.EXECUTION_STALE_PRICE_SECONDS


# --------------------------------------------------------------------------- crossings between sweeps


def _add_candles(
    prices: dict[str, SymbolPrices],
    pending_symbols: set[str],
    position_symbols: set[str],
    working_types: set[str],
    now: datetime,
) -> None:
    """Completed 1-minute candles (mark, and last when needed), fetched at most once a minute."""
    for symbol, entry in prices.items():
        entry.mark_candles = _candles(symbol, mark=True, now=now)
        if symbol in pending_symbols and WorkingType.CONTRACT_PRICE in working_types:
            entry.last_candles = _candles(symbol, mark=False, now=now)


def _candles(symbol: str, *, mark: bool, now: datetime) -> list[Candle]:
    minute = int(now.timestamp() // 60)
    key = f"paper-sweep:candles:{'mark' if mark else 'last'}:{symbol}"
    cached = cache.get(key)
    if cached is not None and cached[0] == minute:
        return list(cached[1])
    client = public_client()
    try:
        call = client.mark_price_klines if mark else client.klines
        klines: list[Kline] = call(symbol, limit=KLINE_CANDLES)
    except Exception as exc:  # crossings between sweeps are a refinement: never fail the sweep for them
        logger.warning("paper sweep: no %s klines for %s: %s", "mark" if mark else "last", symbol, exc)
        return []
    now_ms = now.timestamp() * 1000
    candles = [
        Candle(datetime.fromtimestamp(k.open_time_ms / 1000, tz=now.tzinfo), k.low, k.high)
        for k in klines
        if k.close_time_ms < now_ms  # completed candles only
    ]
    cache.set(key, (minute, candles), timeout=120)
    return candles


# --------------------------------------------------------------------------- mark to market


def mark_to_market_if_due(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Mark every PAPER_MARK_SECONDS, not every sweep: it rewrites every open position, which
    at scale costs more than the trigger search itself. Triggers and liquidations always use
    the fresh prices; only the displayed mark and uPnL lag by up to that interval."""
    key = "paper-sweep:marked-at"
    last = cache.get(key)
    if last is not None and now.timestamp() - last < settings.PAPER_MARK_SECONDS:
        return 0
    cache.set(key, now.timestamp(), timeout=3600)
    return mark_to_market(prices, now)


def mark_to_market(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Set mark price and uPnL of every open paper position.

    PostgreSQL: one UPDATE joined to the marks (numeric arithmetic, exact). Elsewhere the
    values are computed here in Decimal and written with a per-row guarded UPDATE (SQLite
    would compute in floating point).
    """
    if not prices:
        return 0
    if connection.vendor == "postgresql":
        return _mark_to_market_sql(prices, now)
    return _mark_to_market_python(prices, now)


def _mark_to_market_sql(prices: dict[str, SymbolPrices], now: datetime) -> int:
    values = ", ".join(["(%s, %s::numeric)"] * len(prices))
    params: list[Any] = [now]
    for symbol, entry in prices.items():
        params += [symbol, entry.mark]
    sql = f"""
        UPDATE execution_position AS p
        SET mark_price = v.mark,
            unrealized_pnl = CASE WHEN p.side = 'LONG' THEN (v.mark - p.entry_price) * p.quantity
                                  ELSE (p.entry_price - v.mark) * p.quantity END,
            marked_at = %s
        FROM (VALUES {values}) AS v(symbol, mark), accounts_account AS a
        WHERE p.symbol = v.symbol AND p.status = 'open' AND a.id = p.account_id AND a.is_paper_trading
          AND p.mark_price IS DISTINCT FROM v.mark
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # params in text order: marked_at, then the VALUES rows
        return cursor.rowcount


def _mark_to_market_python(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """The same, in Decimal, guarded per row by status and quantity: a position that a fill
    changed since it was read keeps the values the fill computed."""
    positions = list(
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True, symbol__in=prices).only(
            "id", "symbol", "side", "quantity", "entry_price"
        )
    )
    for start in range(0, len(positions), 500):
        batch = positions[start : start + 500]
        marks = [When(pk=p.pk, quantity=p.quantity, then=Value(prices[p.symbol].mark)) for p in batch]
        upnls = [
            When(
                pk=p.pk,
                quantity=p.quantity,
                then=Value(q(unrealized_pnl(p.side, p.quantity, p.entry_price, prices[p.symbol].mark))),
            )
            for p in batch
        ]
        Position.objects.filter(pk__in=[p.pk for p in batch], status=PositionStatus.OPEN).update(
            mark_price=Case(*marks, default=F("mark_price"), output_field=MONEY),
            unrealized_pnl=Case(*upnls, default=F("unrealized_pnl"), output_field=MONEY),
            marked_at=now,
        )
    return len(positions)


# --------------------------------------------------------------------------- funding


def settle_funding(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Charge or credit funding at each funding time a paper position was open through."""
    payments = 0
    symbols = (
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True, symbol__in=prices)
        .values("symbol")
        .annotate(since=Min(Coalesce("last_funding_time", "opened_at")))
    )
    for row in symbols:
        symbol, since = row["symbol"], row["since"]
        key = f"paper-sweep:funding:{symbol}"
        next_funding = prices[symbol].next_funding_time_ms
        if next_funding and cache.get(key) == next_funding:
            continue  # the next funding time has not moved since the last check: nothing was settled
        start_ms = int(since.timestamp() * 1000) + 1
        events = _funding_history(symbol, start_ms)
        for event in events:
            funding_time = datetime.fromtimestamp(event.funding_time_ms / 1000, tz=now.tzinfo)
            if funding_time <= now:
                payments += _pay_funding(symbol, funding_time, event.funding_rate, prices[symbol].mark)
        cache.set(key, next_funding, timeout=24 * 3600)
    return payments


def _funding_history(symbol: str, start_ms: int) -> list[FundingRate]:
    return fetch("fundingRate", lambda: public_client().funding_rates(symbol, start_time_ms=start_ms))


def _pay_funding(symbol: str, funding_time: datetime, rate: Decimal, mark: Decimal) -> int:
    due = Position.objects.filter(
        status=PositionStatus.OPEN, account__is_paper_trading=True, symbol=symbol, opened_at__lt=funding_time
    ).filter(Q(last_funding_time__isnull=True) | Q(last_funding_time__lt=funding_time))
    paid = 0
    for position_id, account_id in due.values_list("pk", "account_id"):
        with transaction.atomic(), batched_events():
            account = lock_account(account_id)
            position = Position.objects.select_for_update().get(pk=position_id)
            if position.status != PositionStatus.OPEN or (
                position.last_funding_time is not None and position.last_funding_time >= funding_time
            ):
                continue
            amount = q(funding_payment(position.side, position.quantity, mark, rate))
            FundingPayment.objects.create(
                account=account,
                position=position,
                symbol=symbol,
                funding_time=funding_time,
                rate=rate,
                mark_price=mark,
                quantity=position.quantity,
                amount=amount,
            )
            position.funding_paid = q(position.funding_paid + amount)
            position.realized_pnl = q(position.realized_pnl - amount)
            position.last_funding_time = funding_time
            position.save(update_fields=["funding_paid", "realized_pnl", "last_funding_time", "updated_at"])
            account.paper_realized_pnl = q(account.paper_realized_pnl - amount)
            account.save(update_fields=["paper_realized_pnl", "updated_at"])
            record_event(
                account=account,
                kind="position.funding",
                subject=position,
                data={"rate": rate, "mark_price": mark, "amount": amount, "funding_time": funding_time},
            )
            paid += 1
    return paid


# --------------------------------------------------------------------------- liquidation


def liquidate_crossed(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Close paper positions whose mark price reached the liquidation price (at the mark)."""
    condition = Q()
    for symbol, entry in prices.items():
        condition |= _liquidation_q(symbol, entry.mark, entry.mark, None)
        for candle in entry.mark_candles:
            condition |= _liquidation_q(symbol, candle.low, candle.high, candle.open_time)
    if not condition:
        return 0
    rows = list(
        Position.objects.filter(
            status=PositionStatus.OPEN, account__is_paper_trading=True, liquidation_price__isnull=False
        )
        .filter(condition)
        .values_list("pk", "symbol")
    )
    liquidated = 0
    for position_id, symbol in rows:
        fee_rate = symbol_rules(symbol).liquidation_fee  # cached exchangeInfo; before the transaction
        liquidated += liquidate_position(position_id, mark=prices[symbol].mark, fee_rate=fee_rate, now=now)
    return liquidated


def _liquidation_q(symbol: str, low: Decimal, high: Decimal, since: datetime | None) -> Q:
    crossed = Q(side="LONG", liquidation_price__gte=low) | Q(side="SHORT", liquidation_price__lte=high)
    scope = Q(symbol=symbol) & crossed
    return scope & Q(opened_at__lte=since) if since is not None else scope


def liquidate_position(position_id: int, *, mark: Decimal, fee_rate: Decimal, now: datetime) -> int:
    with transaction.atomic(), batched_events():
        account_id = Position.objects.values_list("account_id", flat=True).get(pk=position_id)
        account = lock_account(account_id)
        position = Position.objects.select_for_update().get(pk=position_id)
        if position.status != PositionStatus.OPEN or position.liquidation_price is None:
            return 0
        crossed_now = (
            (mark <= position.liquidation_price) if position.side == "LONG" else (mark >= position.liquidation_price)
        )
        # Liquidation happens at the mark price; a crossing seen only in a candle happened at
        # the liquidation price (the mark has since come back).
        price = mark if crossed_now else position.liquidation_price
        fee = q(position.quantity * price * fee_rate)
        close_whole_position(
            account=account,
            position=position,
            price=price,
            fee=fee,
            reason=TradeReason.LIQUIDATION,
            client_order_id=f"liq-{position.pk}",
            now=now,
            realized_floor=-position.margin,
        )
        record_event(
            account=account,
            kind="position.liquidated",
            subject=position,
            data={"mark_price": mark, "price": price, "liquidation_price": position.liquidation_price},
        )
        logger.warning("paper position %s (%s %s) liquidated at %s", position.pk, position.side, position.symbol, price)
    return 1


# --------------------------------------------------------------------------- TP/SL triggers


def crossed_q(low: Decimal, high: Decimal) -> Q:
    """Orders whose trigger the price touched while moving within [low, high] (exchange rules)."""
    return (
        Q(kind=PendingOrderKind.STOP_LOSS, side="SELL", trigger_price__gte=low)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="SELL", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.STOP_LOSS, side="BUY", trigger_price__lte=high)
        | Q(kind=PendingOrderKind.TAKE_PROFIT, side="BUY", trigger_price__gte=low)
    )


def is_crossed(order: PendingOrder, price: Decimal) -> bool:
    sell = order.side == "SELL"
    if order.kind == PendingOrderKind.STOP_LOSS:
        return price <= order.trigger_price if sell else price >= order.trigger_price
    return price >= order.trigger_price if sell else price <= order.trigger_price


def _bounds(entry: SymbolPrices) -> tuple[Decimal, Decimal]:
    """The lowest and highest price any order of the symbol could have seen."""
    prices = [entry.mark] + ([entry.last] if entry.last is not None else [])
    lows = prices + [c.low for c in (*entry.mark_candles, *entry.last_candles)]
    highs = prices + [c.high for c in (*entry.mark_candles, *entry.last_candles)]
    return min(lows), max(highs)


def is_triggered(order: PendingOrder, entry: SymbolPrices) -> bool:
    """The exchange's rule for this order: its working type's price now, or within a completed
    minute candle that started after the order was created."""
    if is_crossed(order, entry.price(order.working_type)):
        return True
    candles = entry.mark_candles if order.working_type == WorkingType.MARK_PRICE else entry.last_candles
    return any(
        candle.open_time >= order.created_at and (is_crossed(order, candle.low) or is_crossed(order, candle.high))
        for candle in candles
    )


def find_triggered(prices: dict[str, SymbolPrices]) -> list[int]:
    """Two steps: a coarse range search per (symbol, kind, side) on the partial index
    `pendingorder_trigger_lookup` with the widest price range of the symbol, then the exact
    rule per order in Python on the few candidates."""
    ids: list[int] = []
    symbols = sorted(prices)
    for start in range(0, len(symbols), 100):
        condition = Q()
        for symbol in symbols[start : start + 100]:
            low, high = _bounds(prices[symbol])
            condition |= Q(symbol=symbol) & crossed_q(low, high)
        candidates = PendingOrder.objects.filter(
            condition, status=PendingOrderStatus.PENDING, account__is_paper_trading=True
        ).only("id", "symbol", "kind", "side", "trigger_price", "working_type", "created_at")
        ids += [order.pk for order in candidates if is_triggered(order, prices[order.symbol])]
    return ids


def claim(candidate_ids: Iterable[int], now: datetime) -> list[int]:
    """pending -> triggered, exactly once across concurrent sweeps; also re-claims orders left
    `triggered` by a worker that died before filling them."""
    candidate_ids = list(candidate_ids)
    with transaction.atomic():
        fresh = list(
            PendingOrder.objects.select_for_update(skip_locked=True)
            .filter(pk__in=candidate_ids, status=PendingOrderStatus.PENDING)
            .values_list("pk", flat=True)
        )
        stale = list(
            PendingOrder.objects.select_for_update(skip_locked=True)
            .filter(
                status=PendingOrderStatus.TRIGGERED,
                triggered_at__lt=now - STALE_TRIGGERED_AFTER,
                account__is_paper_trading=True,
            )
            .values_list("pk", flat=True)
        )
        if fresh:
            PendingOrder.objects.filter(pk__in=fresh).update(
                status=PendingOrderStatus.TRIGGERED, triggered_at=now, updated_at=now
            )
            rows = PendingOrder.objects.filter(pk__in=fresh).values_list("pk", "account_id")
            insert_events(
                [
                    ExecutionEvent(
                        account_id=account_id,
                        kind="pendingorder.triggered",
                        subject_type="pendingorder",
                        subject_id=pk,
                        from_status="pending",
                        to_status="triggered",
                    )
                    for pk, account_id in rows
                ]
            )
        if stale:
            PendingOrder.objects.filter(pk__in=stale).update(triggered_at=now, updated_at=now)
    return fresh + stale


def _trigger_and_fill(prices: dict[str, SymbolPrices], now: datetime, report: SweepReport, started: float) -> None:
    claimed = claim(find_triggered(prices), now)
    report.triggered = len(claimed)
    report.detect_seconds = time.perf_counter() - started
    if not claimed:
        return
    orders = list(PendingOrder.objects.filter(pk__in=claimed).select_related("position"))
    books = _books_for(orders)  # network: before any transaction
    by_account: dict[int, list[PendingOrder]] = defaultdict(list)
    for order in orders:
        if (order.symbol, order.side) in books:  # no book: stays triggered, re-claimed by a later sweep
            by_account[order.account_id].append(order)
    for account_id, account_orders in by_account.items():
        # Stops first: when both legs crossed within one candle, assume the worse happened.
        account_orders.sort(key=lambda o: (o.kind != PendingOrderKind.STOP_LOSS, o.pk))
        for outcome in fill_account_orders(account_id, account_orders, books, prices, now):
            setattr(report, outcome, getattr(report, outcome) + 1)


def _books_for(orders: list[PendingOrder]) -> dict[tuple[str, str], OrderBook]:
    """One order book per (symbol, side), deep enough for the largest order."""
    needed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for order in orders:
        size = order.quantity or (order.position.quantity if order.position else ZERO)
        needed[(order.symbol, order.side)] = max(needed[(order.symbol, order.side)], size)
    books = {}
    for (symbol, side), size in needed.items():
        try:
            books[(symbol, side)] = book_covering(symbol, side, max(size, Decimal("0.000001")))
        except ExecutionError as exc:
            logger.warning("paper sweep: no %s order book (%s); its triggered orders wait", symbol, exc)
    return books


def fill_account_orders(
    account_id: int,
    orders: list[PendingOrder],
    books: dict[tuple[str, str], OrderBook],
    prices: dict[str, SymbolPrices],
    now: datetime,
) -> list[str]:
    """Fill one account's triggered orders: the batched path first (a fixed number of
    statements); if it fails, one transaction with a savepoint per order, so that an order
    that fails is rolled back alone and stays `triggered`, to be re-claimed by a later sweep.
    """
    try:
        return fill_account_batch(account_id, orders, books, prices, now)  # type: ignore[arg-type]
    except Exception:
        logger.exception("paper sweep: batched fills of account %s failed; filling them one by one", account_id)
    outcomes = []
    with transaction.atomic(), batched_events():
        account = lock_account(account_id)
        for order in orders:
            mark = pending_event_count()
            try:
                with transaction.atomic():
                    outcome = fill_triggered_order(
                        account, order.pk, books[(order.symbol, order.side)], prices.get(order.symbol), now
                    )
            except Exception:
                discard_events_after(mark)
                logger.exception("paper sweep: filling triggered order %s failed; it will be retried", order.pk)
                outcome = "failed"
            outcomes.append(outcome)
    return outcomes


def fill_triggered_order(
    account: Account, order_id: int, book: OrderBook, entry: SymbolPrices | None, now: datetime
) -> str:
    """Fill one triggered order at the market (account locked by the caller).

    Returns 'filled', 'cancelled' or 'failed'.
    """
    order = PendingOrder.objects.select_for_update().get(pk=order_id)
    if order.status != PendingOrderStatus.TRIGGERED:
        return "cancelled" if order.status == PendingOrderStatus.CANCELLED else "filled"
    position = open_position(account, order.symbol)
    if position is None or position.pk != order.position_id:
        order.closed_at = now
        transition(
            order,
            to_status=PendingOrderStatus.CANCELLED,
            account=account,
            message="its position is already closed",
            update_fields=["closed_at"],
        )
        return "cancelled"
    quantity = min(order.quantity or position.quantity, position.quantity)
    levels = book.asks if order.side == "BUY" else book.bids
    filled, quote = walk_book(levels, quantity)
    if filled < quantity:
        order.error_message = f"the visible book holds {filled}; {quantity} could not be filled"
        transition(
            order,
            to_status=PendingOrderStatus.FAILED,
            account=account,
            message=order.error_message,
            update_fields=["error_message"],
        )
        position.needs_protection = True
        position.save(update_fields=["needs_protection", "updated_at"])
        return "failed"
    price = q(quote / filled)
    if entry is not None and not is_crossed(order, entry.price(order.working_type)):
        # Seen only in a candle: the price has come back. Fill no better than the trigger.
        price = min(price, order.trigger_price) if order.side == "SELL" else max(price, order.trigger_price)
    fee = q(quantity * price * settings.PAPER_TAKER_FEE_RATE)
    trade = reduce_only_trade(
        account=account,
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        leverage=position.leverage,
        client_order_id=f"{order.client_order_id}-f",
        reason=protective_fill_reason(order.kind),
    )
    booked = book_fill(
        account=account,
        trade=trade,
        quantity=quantity,
        price=price,
        fee=fee,
        leverage=position.leverage,
        now=now,
        keep_pending=order,
        position=position,
    )
    order.trade, order.closed_at = trade, now
    transition(
        order,
        to_status=PendingOrderStatus.FILLED,
        account=account,
        update_fields=["trade", "closed_at"],
        data={"price": price, "quantity": quantity},
    )
    if booked.position is not None:  # closed positions had their other orders cancelled already
        _cancel_sibling(order, account, now)
    return "filled"


def _cancel_sibling(order: PendingOrder, account: Account, now: datetime) -> None:
    if order.sibling_id is None:
        return
    sibling = PendingOrder.objects.select_for_update().get(pk=order.sibling_id)
    if sibling.status in (PendingOrderStatus.PENDING, PendingOrderStatus.TRIGGERED, PendingOrderStatus.FAILED):
        sibling.closed_at = now
        transition(
            sibling,
            to_status=PendingOrderStatus.CANCELLED,
            account=account,
            message=f"its sibling {order.kind} filled",
            update_fields=["closed_at"],
        )
