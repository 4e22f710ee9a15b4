"""The shadow of a live market order (entry, close, flip).

The book is read over REST on a warm worker thread, STARTED before the order's set-up and send:
the depth request leaves before the order's own, so the venue normally serves the book from
before the order (not the post-fill book, which lacks the liquidity the order took). Normally,
not always: the two requests still race (on the in-process simulator with no matching time the
read loses ~10% of the time; docs/design.md says what would make it deterministic). The send time
is the exchange's clock (the client's offset-corrected `now_ms`), as is the book's time (its
E/T), so `book_age_ms` = send - book is on one clock; beyond PARITY_MAX_BOOK_AGE_MS either way
the shadow is marked stale.

The order path never waits for the read before booking and protection: `shadowed` starts the
read, sends, and parks what it needs; the order service calls `record_parked_shadow` after the
protection is placed, which joins the read (what is left of PARITY_BOOK_WAIT_SECONDS since the
send, usually nothing: the read finished long before the fill was booked and protected) and
writes the record on the order's own thread and connection.

A hung venue cannot starve later orders: at most BOOK_READERS reads run at once; when all are
busy the read is skipped (the record says "no book"), a read not done in time is cancelled
(`future.cancel()`, which only helps a queued one) and recorded as "no book", and the reads use
a client of their own with short timeouts and no retry.

Nothing here may fail the order: every parity failure is logged and counted.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from accounts.models import Account
from execution.aster.client import AsterClient, _depth_weight
from execution.aster.errors import AsterTransportError
from execution.aster.replies import OrderBook
from execution.metrics import PARITY_FAILURES
from execution.models import ParityKind, ParityRecord, Position, PositionStatus, Trade
from execution.services.exchange import weight_budget
from execution.services.parity.arithmetic import shadow_of_book, slippage_bps
from execution.services.parity.recording import failed, save_record
from execution.services.position_math import q

if TYPE_CHECKING:  # the live adapter calls this module: no import back at run time
    from execution.services.adapters.base import Fill, MarketOrder

logger = logging.getLogger(__name__)
BOOK_READERS = 4  # concurrent book reads across the process's order paths
BOOK_CONNECT_TIMEOUT = 0.5  # seconds: a book this late is no use to a shadow
BOOK_READ_TIMEOUT = 1.0
BOOK_LIMIT = 50  # levels read (weight 2): deeper than any fill this service sends is expected to walk
PARKED_LIMIT = 256  # shadows whose order never reached the hook (an adapter used on its own)
NO_BOOK_BUSY = "no book: every book reader was busy"
NO_BOOK_LATE = "no book: the read did not finish in time"
NO_BOOK_FAILED = "no book: the read failed"

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_free_readers = threading.BoundedSemaphore(BOOK_READERS)
_parked: OrderedDict[tuple[int, str], ParkedShadow] = OrderedDict()
_parked_lock = threading.Lock()


@dataclass(frozen=True)
class ParkedShadow:
    """A live fill waiting for its record: the order, its fill, the read in flight (None: none
    was started) and the send time on the exchange's clock."""

    account_id: int
    order: MarketOrder
    fill: Fill
    future: Future[OrderBook | RawDepth] | None
    sent_ms: int
    started: float  # time.monotonic() at the send
    note: str = ""


def _readers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=BOOK_READERS, thread_name_prefix="parity-book")
        return _pool


class LeanBookClient(AsterClient):
    """The readers' own public client: short timeouts, one attempt (a late book is worthless),
    the process's weight budget; depth over a kept-alive http.client connection per reader
    thread. Why not requests: its ~0.5 ms of Python before the request leaves runs while the
    order path builds its own, and the two share the GIL (bench/parity.py measured it in
    decision-to-wire); here the request leaves after a few µs and the reply is parsed while the
    order path waits for its own reply."""

    _local = threading.local()

    def order_book(self, symbol: str, *, limit: int = 100) -> OrderBook:
        return self.raw_depth(symbol, limit=limit).parse()

    def raw_depth(self, symbol: str, *, limit: int) -> RawDepth:
        """The depth reply, unparsed: the reader thread hands it over as it came, and the order
        path's hook parses it after the protection (no parsing beside the order's own work)."""
        symbol = self._check_symbol(symbol)
        self.budget.acquire(_depth_weight(limit))
        self.requests_sent += 1
        connection = self._connection()
        try:
            connection.request("GET", f"/fapi/v1/depth?symbol={symbol}&limit={limit}", headers=LEAN_HEADERS)
            reply = connection.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            self._local.connection = None
            raise AsterTransportError(f"{type(exc).__name__} on GET /fapi/v1/depth") from None
        self.budget.record_response(reply.status, dict(reply.getheaders()))
        if reply.status != 200:
            raise AsterTransportError(f"depth: HTTP {reply.status}", http_status=reply.status)
        return RawDepth(symbol, body)

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "base_url", None) != self.base_url:
            parts = urlsplit(self.base_url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            connection = kind(parts.hostname or "", parts.port, timeout=BOOK_READ_TIMEOUT)
            self._local.connection, self._local.base_url = connection, self.base_url
        return connection


LEAN_HEADERS = {"User-Agent": "execution-service/1.0 (parity)"}


@dataclass(frozen=True)
class RawDepth:
    symbol: str
    body: bytes

    def parse(self) -> OrderBook:
        return OrderBook.parse(self.symbol, json.loads(self.body))


@lru_cache(maxsize=4)
def _book_client(base_url: str) -> LeanBookClient:
    return LeanBookClient(
        base_url,
        connect_timeout=BOOK_CONNECT_TIMEOUT,
        read_timeout=BOOK_READ_TIMEOUT,
        max_get_attempts=1,
        budget=weight_budget(),
    )


def shadowed(
    account: Account,
    order: MarketOrder,
    execute: Callable[[MarketOrder], Fill],
    *,
    now_ms: Callable[[], int],
    prepare: Callable[[], None] = lambda: None,
) -> Fill:
    """Execute `order` with `execute`, having started the book read just before; park what the
    record needs (`record_parked_shadow` writes it after the protection). The order's outcome
    (its fill, or its exception) is exactly what `execute` gives. `now_ms`: the order client's
    offset-corrected exchange clock. `prepare`: the order's set-up, run after the read started
    (its cache reads give the reader thread the GIL to put its request on the wire first)."""
    if not settings.PARITY_ENABLED:
        prepare()
        return execute(order)
    future, note = start_book_read(order)
    prepare()
    sent_ms, started = now_ms(), time.monotonic()
    fill = execute(order)  # an exception leaves the read to finish on its own; nothing is recorded
    park(ParkedShadow(account.pk, order, fill, future, sent_ms, started, note))
    return fill


def start_book_read(order: MarketOrder) -> tuple[Future[OrderBook | RawDepth] | None, str]:
    """Hand the read to an idle reader; never queue it behind busy (maybe hung) ones."""
    if not _free_readers.acquire(blocking=False):
        return None, NO_BOOK_BUSY
    try:
        future = _readers().submit(read_book, order, settings.ASTER_BASE_URL)
    except Exception:
        _free_readers.release()
        failed("book", "market")
        return None, NO_BOOK_FAILED
    future.add_done_callback(lambda _done: _free_readers.release())
    return future, ""


def read_book(order: MarketOrder, base_url: str) -> OrderBook | RawDepth:
    """In the reader thread: one depth read of BOOK_LIMIT levels (weight 2), handed over unparsed.
    A fill deeper than that is recorded with the part the book covered (noted)."""
    return _book_client(base_url).raw_depth(order.symbol, limit=BOOK_LIMIT)


def park(shadow: ParkedShadow) -> None:
    with _parked_lock:
        _parked[(shadow.account_id, shadow.order.client_order_id)] = shadow
        while len(_parked) > PARKED_LIMIT:
            _key, dropped = _parked.popitem(last=False)
            if dropped.future is not None:
                dropped.future.cancel()
            logger.warning("parity: the shadow of %s was never recorded", dropped.order.client_order_id)


def record_parked_shadow(*, account_id: int, client_order_id: str) -> ParityRecord | None:
    """The order service's hook, after the fill is booked and protected: join the book read
    (what is left of PARITY_BOOK_WAIT_SECONDS since the send) and write the record. Nothing
    parked (a paper order, parity off, a failed send): nothing to do. Never raises."""
    with _parked_lock:
        shadow = _parked.pop((account_id, client_order_id), None)
    if shadow is None:
        return None
    book, note = _joined(shadow)
    try:
        fields = market_record_fields(shadow=shadow, book=book, note=note)
    except Exception:
        failed("shadow", "market")
        return None
    return save_record(**fields)


def _joined(shadow: ParkedShadow) -> tuple[OrderBook | None, str]:
    if shadow.future is None:
        return None, shadow.note
    left = shadow.started + settings.PARITY_BOOK_WAIT_SECONDS - time.monotonic()
    try:
        read = shadow.future.result(timeout=max(0.0, left))
        return (read.parse() if isinstance(read, RawDepth) else read), ""
    except TimeoutError:
        shadow.future.cancel()
        logger.warning("parity: the book read for %s did not finish in time", shadow.order.client_order_id)
        PARITY_FAILURES.labels(stage="book_late").inc()
        return None, NO_BOOK_LATE
    except Exception:
        failed("book", "market")
        return None, NO_BOOK_FAILED


def market_record_fields(*, shadow: ParkedShadow, book: OrderBook | None, note: str) -> dict[str, object]:
    """The record of one market fill against the book read just before its send (booked by
    now: the kind is judged on the position after the fill, see `kind_after`)."""
    order, fill = shadow.order, shadow.fill
    trade_id, position = _trade_and_position(account_id=shadow.account_id, order=order)
    fields: dict[str, object] = {
        "account_id": shadow.account_id,
        "trade_id": trade_id,
        "source_key": order.client_order_id,
        "symbol": order.symbol,
        "kind": kind_after(order, fill.quantity, position),
        "side": order.side,
        "quantity": fill.quantity,
        "live_price": fill.price,
        "live_fee": fill.fee,
        "fee_diff": Decimal("0"),  # no shadow: the report leaves the row out of its fee sums
        "note": note,
    }
    if book is None:
        return fields
    walked = shadow_of_book(book, order.side, fill.quantity)
    age_ms = shadow.sent_ms - book.time_ms
    # A partly covered book: the fees are compared over what it covered.
    covered_fee = fill.fee if walked.covered >= fill.quantity else q(fill.fee * walked.covered / fill.quantity)
    fields.update(
        shadow_price=walked.price,
        slippage_bps=slippage_bps(order.side, fill.price, walked.price),
        shadow_fee=walked.fee,
        fee_diff=q(covered_fee - walked.fee) if walked.price is not None else Decimal("0"),
        book_age_ms=age_ms,
        stale=abs(age_ms) > settings.PARITY_MAX_BOOK_AGE_MS,
        note="" if walked.covered >= fill.quantity else f"the book covered {walked.covered} of {fill.quantity}",
    )
    return fields


def _trade_and_position(*, account_id: int, order: MarketOrder) -> tuple[int | None, tuple[str, Decimal] | None]:
    """The order's Trade id and the open position (side, quantity) after this fill was booked,
    in one statement."""
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


def kind_after(order: MarketOrder, filled: Decimal, position: tuple[str, Decimal] | None) -> str:
    """Entry, close or flip, judged on the (one-way) position after this fill was booked: none
    left or one on the other side: a close; one on the order's side holding at least the fill:
    an entry (opened or added to); less than the fill: a flip (the rest closed the other side)."""
    if order.reduce_only or position is None:
        return ParityKind.CLOSE
    side, quantity = position
    if (side == "LONG") != (order.side == "BUY"):
        return ParityKind.CLOSE
    return ParityKind.ENTRY if quantity >= filled else ParityKind.FLIP
