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

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case, DecimalField, F, Min, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

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
    Trade,
    TradeReason,
    WorkingType,
)
from execution.services.adapters.paper import walk_book
from execution.services.audit import batched_events, record_event, transition
from execution.services.exchange import public_client
from execution.services.ledger import book_fill, lock_account, open_position
from execution.services.market_data import book_covering, fetch, symbol_rules
from execution.services.position_math import closing_side, funding_payment, q, unrealized_pnl

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


# --------------------------------------------------------------------------- entry point


def sweep_paper_triggers(*, now: datetime | None = None) -> SweepReport:
    started = time.perf_counter()
    now = now or timezone.now()
    report = SweepReport()
    pending_symbols, working_types = _pending_symbols()
    position_symbols = set(
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True)
        .values_list("symbol", flat=True)
        .distinct()
    )
    symbols = pending_symbols | position_symbols
    report.symbols = len(symbols)
    if symbols:
        prices = _prices(symbols, working_types, now, report)
        _add_candles(prices, pending_symbols, position_symbols, working_types, now)
        report.marked = mark_to_market(prices, now)
        report.funding_payments = settle_funding(prices, now)
        report.liquidated = liquidate_crossed(prices, now)
        _trigger_and_fill(prices, now, report)
    report.seconds = time.perf_counter() - started
    return report


def _pending_symbols() -> tuple[set[str], set[str]]:
    rows = (
        PendingOrder.objects.filter(status=PendingOrderStatus.PENDING, account__is_paper_trading=True)
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
        prices[symbol] = SymbolPrices(mark=index.mark_price, last=last.price if last else None)
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


def mark_to_market(prices: dict[str, SymbolPrices], now: datetime) -> int:
    """Set mark price and uPnL of open paper positions (exact Decimal, computed here).

    The UPDATE is guarded per row by status and quantity: a position that a fill changed
    since it was read keeps its values (the fill computed them) instead of stale ones.
    """
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
        marker = cache.get(f"paper-sweep:funding:{symbol}")
        if marker is not None and marker >= since.timestamp() and now.timestamp() < marker + 3600:
            continue  # checked recently and no position is older than the check
        start_ms = int(since.timestamp() * 1000) + 1
        events = _funding_history(symbol, start_ms)
        for event in events:
            funding_time = datetime.fromtimestamp(event.funding_time_ms / 1000, tz=now.tzinfo)
            if funding_time <= now:
                payments += _pay_funding(symbol, funding_time, event.funding_rate, prices[symbol].mark)
        cache.set(f"paper-sweep:funding:{symbol}", now.timestamp(), timeout=3600)
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
        trade = Trade.objects.create(
            account=account,
            symbol=position.symbol,
            side=closing_side(position.side),
            requested_quantity=position.quantity,
            quantity=position.quantity,
            leverage=position.leverage,
            reduce_only=True,
            client_order_id=f"liq-{position.pk}",
            reason=TradeReason.LIQUIDATION,
        )
        book_fill(
            account=account,
            trade=trade,
            quantity=position.quantity,
            price=price,
            fee=fee,
            leverage=position.leverage,
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


def _symbol_trigger_q(symbol: str, entry: SymbolPrices) -> Q:
    mark_now = Q(working_type=WorkingType.MARK_PRICE) & crossed_q(entry.mark, entry.mark)
    last = entry.last if entry.last is not None else entry.mark
    last_now = Q(working_type=WorkingType.CONTRACT_PRICE) & crossed_q(last, last)
    condition = mark_now | last_now
    for working_type, candles in (
        (WorkingType.MARK_PRICE, entry.mark_candles),
        (WorkingType.CONTRACT_PRICE, entry.last_candles),
    ):
        for candle in candles:
            condition |= Q(working_type=working_type, created_at__lte=candle.open_time) & crossed_q(
                candle.low, candle.high
            )
    return Q(symbol=symbol) & condition


def find_triggered(prices: dict[str, SymbolPrices]) -> list[int]:
    ids: list[int] = []
    symbols = sorted(prices)
    for start in range(0, len(symbols), 100):
        condition = Q()
        for symbol in symbols[start : start + 100]:
            condition |= _symbol_trigger_q(symbol, prices[symbol])
        ids += PendingOrder.objects.filter(
            condition, status=PendingOrderStatus.PENDING, account__is_paper_trading=True
        ).values_list("pk", flat=True)
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
            ExecutionEvent.objects.bulk_create(
                ExecutionEvent(
                    account_id=account_id,
                    kind="pendingorder.triggered",
                    subject_type="pendingorder",
                    subject_id=pk,
                    from_status="pending",
                    to_status="triggered",
                )
                for pk, account_id in rows
            )
        if stale:
            PendingOrder.objects.filter(pk__in=stale).update(triggered_at=now, updated_at=now)
    return fresh + stale


def _trigger_and_fill(prices: dict[str, SymbolPrices], now: datetime, report: SweepReport) -> None:
    claimed = claim(find_triggered(prices), now)
    report.triggered = len(claimed)
    if not claimed:
        return
    by_symbol: dict[str, list[PendingOrder]] = defaultdict(list)
    for order in PendingOrder.objects.filter(pk__in=claimed).select_related("position"):
        by_symbol[order.symbol].append(order)
    for symbol, symbol_orders in by_symbol.items():
        # Stops first: when both legs crossed within one candle, assume the worse happened.
        symbol_orders.sort(key=lambda o: (o.kind != PendingOrderKind.STOP_LOSS, o.pk))
        _fill_symbol(symbol, symbol_orders, prices.get(symbol), now, report)


def _fill_symbol(
    symbol: str, orders: list[PendingOrder], entry: SymbolPrices | None, now: datetime, report: SweepReport
) -> None:
    sides = {o.side for o in orders}
    books: dict[str, OrderBook] = {}
    try:
        for side in sides:
            biggest = max(
                (o.quantity or (o.position.quantity if o.position else ZERO)) for o in orders if o.side == side
            )
            books[side] = book_covering(symbol, side, max(biggest, Decimal("0.000001")))
    except ExecutionError as exc:
        logger.warning("paper sweep: no order book for %s (%s); triggered orders wait for the next sweep", symbol, exc)
        return
    for order in orders:
        outcome = fill_triggered_order(order.pk, books[order.side], entry, now)
        setattr(report, outcome, getattr(report, outcome) + 1)


def fill_triggered_order(order_id: int, book: OrderBook, entry: SymbolPrices | None, now: datetime) -> str:
    """Fill one triggered order at the market. Returns 'filled', 'cancelled' or 'failed'."""
    with transaction.atomic(), batched_events():
        account_id = PendingOrder.objects.values_list("account_id", flat=True).get(pk=order_id)
        account = lock_account(account_id)
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
        trade = Trade.objects.create(
            account=account,
            symbol=order.symbol,
            side=order.side,
            requested_quantity=quantity,
            quantity=quantity,
            leverage=position.leverage,
            reduce_only=True,
            client_order_id=f"{order.client_order_id}-f",
            reason=TradeReason.TAKE_PROFIT if order.kind == PendingOrderKind.TAKE_PROFIT else TradeReason.STOP_LOSS,
        )
        book_fill(
            account=account,
            trade=trade,
            quantity=quantity,
            price=price,
            fee=fee,
            leverage=position.leverage,
            now=now,
            keep_pending=order,
        )
        order.trade, order.closed_at = trade, now
        transition(
            order,
            to_status=PendingOrderStatus.FILLED,
            account=account,
            update_fields=["trade", "closed_at"],
            data={"price": price, "quantity": quantity},
        )
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
