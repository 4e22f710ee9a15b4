"""The shadow of a live market order (entry, close, flip).

Why a worker thread, and why it waits for the send: the book must be the one of the moment of
sending, and reading it first would put a REST round trip on the order path; reading it in a
thread from the start still cost the order ~1 ms before the wire (the thread's request building
and JSON parsing compete for the GIL with the order's own; bench/parity.py). So the worker
sleeps (1 ms polls, GIL released) until the order's client has handed its POST to the
session, then reads the book while the order is on the wire. The order's reply and its
userTrades read take longer than the book read, so the join after the fill rarely waits (at
most PARITY_BOOK_WAIT_SECONDS). The book's exchange time against the send is recorded
(`book_age_ms`, positive: the book is older than the send; typically a few ms negative: read
just after); beyond PARITY_MAX_BOOK_AGE_MS either way the shadow is marked stale. A book read
just after the order reached the venue may already show the order's own fill: for orders
small against the visible book the difference is below a tick; the alternative (a
depth20@100ms stream kept by the stream process) is in docs/design.md.

Nothing here may fail the order: the live adapter calls `shadowed` once, and every parity
failure is logged and counted. The record is written after the fill, outside any transaction
of the order path (its own savepoint when a caller holds one), before the order is booked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection

from accounts.models import Account
from execution.aster.replies import OrderBook
from execution.models import ParityKind, ParityRecord, Position, PositionStatus, Trade
from execution.services.market_data import book_covering
from execution.services.parity.arithmetic import shadow_of_book, slippage_bps
from execution.services.parity.recording import failed, save_record
from execution.services.position_math import q

if TYPE_CHECKING:  # the live adapter calls this module: no import back at run time
    from execution.services.adapters.base import Fill, MarketOrder

logger = logging.getLogger(__name__)
BOOK_READERS = 4  # concurrent book reads across the process's order paths

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


SEND_POLL_SECONDS = 0.001  # few wake-ups (each takes the GIL) while the order is being built
SEND_WAIT_SECONDS = 0.05  # the worker reads the book anyway this long after the order path began


@dataclass(frozen=True)
class SentBook:
    """The book, and the wall-clock time (ms) the worker saw the order handed to the session."""

    book: OrderBook
    sent_ms: int


@dataclass(frozen=True)
class BookWatch:
    """A book read in flight."""

    future: Future[SentBook]


def _readers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=BOOK_READERS, thread_name_prefix="parity-book")
        return _pool


def shadowed(
    account: Account,
    order: MarketOrder,
    execute: Callable[[MarketOrder], Fill],
    *,
    requests_sent: Callable[[], int],
) -> Fill:
    """Execute `order` with `execute` and record its paper shadow. The order's outcome (its
    fill, or its exception) is exactly what `execute` gives. `requests_sent`: the order's
    client's request counter (it moves when the POST is handed to the session)."""
    if not settings.PARITY_ENABLED:
        return execute(order)
    watch = watch_book(order, requests_sent)
    fill = execute(order)  # an exception leaves the read to finish on its own; nothing is recorded
    if watch is not None:
        record_market_shadow(account=account, order=order, fill=fill, watch=watch)
    return fill


def watch_book(order: MarketOrder, requests_sent: Callable[[], int]) -> BookWatch | None:
    """Start the worker that reads the book once the order is sent; None (logged, counted) if it
    cannot start."""
    try:
        future = _readers().submit(read_after_send, order, requests_sent, requests_sent())
    except Exception:
        failed("book", "market")
        return None
    return BookWatch(future=future)


def read_after_send(order: MarketOrder, requests_sent: Callable[[], int], before: int) -> SentBook:
    """In the worker: wait (sleeping) for the order's client to send, then read the book."""
    deadline = time.monotonic() + SEND_WAIT_SECONDS
    while requests_sent() == before and time.monotonic() < deadline:
        time.sleep(SEND_POLL_SECONDS)
    sent_ms = int(time.time() * 1000)
    return SentBook(book=book_covering(order.symbol, order.side, order.quantity), sent_ms=sent_ms)


def record_market_shadow(*, account: Account, order: MarketOrder, fill: Fill, watch: BookWatch) -> ParityRecord | None:
    """Join the book read and write the record. Never raises."""
    try:
        sent = watch.future.result(timeout=settings.PARITY_BOOK_WAIT_SECONDS)
    except Exception:
        failed("book", "market")
        return None
    try:
        fields = market_record_fields(account=account, order=order, fill=fill, book=sent.book, sent_ms=sent.sent_ms)
    except Exception:
        failed("shadow", "market")
        return None
    return save_record(**fields)


def market_record_fields(
    *, account: Account, order: MarketOrder, fill: Fill, book: OrderBook, sent_ms: int
) -> dict[str, object]:
    """The record of one market fill against the book read beside it."""
    shadow = shadow_of_book(book, order.side, fill.quantity)
    age_ms = sent_ms - book.time_ms
    note = "" if shadow.covered >= fill.quantity else f"the book covered {shadow.covered} of {fill.quantity}"
    trade_id, position = _trade_and_position(account_id=account.pk, order=order)
    return {
        "account_id": account.pk,
        "trade_id": trade_id,
        "source_key": order.client_order_id,
        "symbol": order.symbol,
        "kind": kind_of(order, position),
        "side": order.side,
        "quantity": fill.quantity,
        "live_price": fill.price,
        "shadow_price": shadow.price,
        "slippage_bps": slippage_bps(order.side, fill.price, shadow.price),
        "live_fee": fill.fee,
        "shadow_fee": shadow.fee,
        "fee_diff": q(fill.fee - shadow.fee),
        "book_age_ms": age_ms,
        "stale": abs(age_ms) > settings.PARITY_MAX_BOOK_AGE_MS,
        "note": note,
    }


def _trade_and_position(*, account_id: int, order: MarketOrder) -> tuple[int | None, tuple[str, Decimal] | None]:
    """The order's Trade id and the open position (side, quantity) before this fill is booked
    (the order path books it after the adapter returns), in one statement. Plain SQL: the ORM's
    version of this join cost ~2 ms of query building on the order's way to its booking."""
    trade, position = Trade._meta.db_table, Position._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.id, p.side, p.quantity FROM {trade} t "
            f"LEFT JOIN {position} p ON p.account_id = t.account_id AND p.symbol = %s AND p.status = %s "
            "WHERE t.account_id = %s AND t.client_order_id = %s",
            [order.symbol, PositionStatus.OPEN, account_id, order.client_order_id],
        )
        row = cursor.fetchone()
        if row is None:  # no intent row (an adapter used on its own): the position alone
            cursor.execute(
                f"SELECT NULL, side, quantity FROM {position} WHERE account_id = %s AND symbol = %s AND status = %s",
                [account_id, order.symbol, PositionStatus.OPEN],
            )
            row = cursor.fetchone() or (None, None, None)
    trade_id, side, quantity = row
    # SQLite hands a decimal column back as a number: through str, as the ORM would.
    return trade_id, (str(side), Decimal(str(quantity))) if side is not None else None


def kind_of(order: MarketOrder, position: tuple[str, Decimal] | None) -> str:
    """Entry, close or flip, judged on the position before this fill."""
    if position is None:
        return ParityKind.CLOSE if order.reduce_only else ParityKind.ENTRY
    side, quantity = position
    opposite = (side == "LONG") == (order.side == "SELL")
    if not opposite:
        return ParityKind.ENTRY
    if order.reduce_only or order.quantity <= quantity:
        return ParityKind.CLOSE
    return ParityKind.FLIP
