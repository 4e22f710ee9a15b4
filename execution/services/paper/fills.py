"""Filling claimed (triggered) orders: the order books they need, then per account the batched
writer, or, if that fails, this module's writer one order at a time.

Both writers book what `fill_plan.plan_trigger_fill` decides. The batched one is the fast path;
when it fails (a database error, a bug) the failure is logged, counted in the sweep report and
recorded as a `sweep.batch_fallback` event, and the account's orders are filled one by one,
each in its own savepoint, so that an order that fails alone stays `triggered` and is
re-claimed by a later sweep.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from accounts.audit import batched_events, discard_events_after, pending_event_count, record_event, transition
from accounts.models import Account
from execution.aster.replies import OrderBook
from execution.exceptions import ExecutionError
from execution.models import PendingOrder, PendingOrderKind, PendingOrderStatus
from execution.services.ledger import (
    book_fill,
    cancel_sibling,
    lock_account,
    mark_leg_filled,
    open_position,
    protective_fill_reason,
    reduce_only_trade,
)
from execution.services.market_data import book_covering
from execution.services.paper import batch_fills
from execution.services.paper.fill_plan import CANCELLED, FAILED, fill_client_order_id, plan_trigger_fill
from execution.services.paper.prices import SymbolPrices

logger = logging.getLogger(__name__)

Books = dict[tuple[str, str], OrderBook]


@dataclass
class FillReport:
    filled: int = 0
    cancelled: int = 0
    failed: int = 0
    batch_fallbacks: int = 0  # accounts whose batched fills failed and were filled one by one
    waiting: list[int] = field(default_factory=list)  # no order book: left triggered for a later sweep

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class ClaimedOrder(NamedTuple):
    """A claimed order as the fills first see it (a tuple: read once, before any lock; the
    writers read the rows they change again under the account lock)."""

    pk: int
    account_id: int
    symbol: str
    side: str
    kind: str
    size: Decimal  # its quantity, or its position's (closes the whole position)


def fill_claimed(order_ids: list[int], prices: dict[str, SymbolPrices], now: datetime) -> FillReport:
    report = FillReport()
    orders = claimed_orders(order_ids)
    books = books_for(orders)  # network: before any transaction
    by_account: dict[int, list[ClaimedOrder]] = defaultdict(list)
    for order in orders:
        if (order.symbol, order.side) in books:
            by_account[order.account_id].append(order)
        else:
            report.waiting.append(order.pk)
    accounts = list(by_account.items())
    # Each account's fills take its lock: sweeps of other shards (other symbols, same accounts)
    # would queue behind this one account after account if all went in the same order.
    random.shuffle(accounts)
    for account_id, account_orders in accounts:
        # Stops first: when both legs crossed within one candle, assume the worse happened.
        account_orders.sort(key=lambda o: (o.kind != PendingOrderKind.STOP_LOSS, o.pk))
        for outcome in fill_account_orders(account_id, account_orders, books, prices, now, report):
            report.count(outcome)
    return report


def claimed_orders(order_ids: list[int]) -> list[ClaimedOrder]:
    rows = PendingOrder.objects.filter(pk__in=order_ids).values_list(
        "pk", "account_id", "symbol", "side", "kind", "quantity", "position__quantity"
    )
    return [
        ClaimedOrder(pk, account_id, symbol, side, kind, quantity or position_quantity or Decimal("0"))
        for pk, account_id, symbol, side, kind, quantity, position_quantity in rows
    ]


def books_for(orders: Sequence[ClaimedOrder]) -> Books:
    """One order book per (symbol, side), deep enough for the largest order."""
    needed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for order in orders:
        needed[(order.symbol, order.side)] = max(needed[(order.symbol, order.side)], order.size)
    books = {}
    for (symbol, side), size in needed.items():
        try:
            books[(symbol, side)] = book_covering(symbol, side, max(size, Decimal("0.000001")))
        except ExecutionError as exc:
            logger.warning("paper sweep: no %s order book (%s); its triggered orders wait", symbol, exc)
    return books


def fill_account_orders(
    account_id: int,
    orders: Sequence[batch_fills.Claimed],
    books: Books,
    prices: dict[str, SymbolPrices],
    now: datetime,
    report: FillReport,
) -> list[str]:
    """One account's triggered orders, in the given order: batched, else one by one."""
    try:
        return batch_fills.fill_account_batch(account_id, orders, books, prices, now)
    except Exception as exc:  # counted, logged and audited below: never silent
        logger.exception("paper sweep: batched fills of account %s failed; filling them one by one", account_id)
        report.batch_fallbacks += 1
        failure = f"{type(exc).__name__}: {exc}"
    outcomes = []
    with transaction.atomic(), batched_events():
        account = lock_account(account_id)
        record_event(
            account=account,
            kind="sweep.batch_fallback",
            message="batched fills failed; filled one by one",
            data={"error": failure[:500], "orders": [o.pk for o in orders]},
        )
        for order in orders:
            mark = pending_event_count()
            try:
                with transaction.atomic():
                    outcome = fill_triggered_order(
                        account, order.pk, books[(order.symbol, order.side)], prices.get(order.symbol), now
                    )
            except Exception:
                discard_events_after(mark)
                # The savepoint undid the rows; the locked account object still holds what the
                # failed order added to it in memory, which the next order would save.
                account.refresh_from_db(fields=["paper_realized_pnl"])
                logger.exception("paper sweep: filling triggered order %s failed; it will be retried", order.pk)
                outcome = FAILED
            outcomes.append(outcome)
    return outcomes


def fill_triggered_order(
    account: Account, order_id: int, book: OrderBook, entry: SymbolPrices | None, now: datetime
) -> str:
    """Fill one triggered order at the market (account locked by the caller): the plan, written
    row by row through the ledger. Returns 'filled', 'cancelled' or 'failed'."""
    order = PendingOrder.objects.select_for_update().get(pk=order_id)
    position = open_position(account, order.symbol)
    plan = plan_trigger_fill(
        order=order, position=position, book=book, entry=entry, fee_rate=settings.PAPER_TAKER_FEE_RATE
    )
    if plan.already_final:
        return plan.outcome
    if plan.outcome == CANCELLED:
        order.closed_at = now
        transition(
            order,
            to_status=PendingOrderStatus.CANCELLED,
            account=account,
            message=plan.message,
            update_fields=["closed_at"],
        )
        return plan.outcome
    assert position is not None  # a plan that is neither cancelled nor final has the position
    if plan.outcome == FAILED:
        order.error_message = plan.message
        transition(
            order,
            to_status=PendingOrderStatus.FAILED,
            account=account,
            message=plan.message,
            update_fields=["error_message"],
        )
        position.needs_protection = True
        position.save(update_fields=["needs_protection", "updated_at"])
        return plan.outcome
    trade = reduce_only_trade(
        account=account,
        symbol=order.symbol,
        side=order.side,
        quantity=plan.quantity,
        leverage=position.leverage,
        client_order_id=fill_client_order_id(order),
        reason=protective_fill_reason(order.kind),
    )
    # A whole close cancels the position's other legs inside book_fill (keeping this one).
    book_fill(
        account=account,
        trade=trade,
        quantity=plan.quantity,
        price=plan.price,
        fee=plan.fee,
        leverage=position.leverage,
        now=now,
        keep_pending=order,
        position=position,
    )
    mark_leg_filled(order, trade=trade, account=account, now=now, price=plan.price, quantity=plan.quantity)
    if not plan.closes_position:
        cancel_sibling(order, account=account, now=now)
    return plan.outcome
