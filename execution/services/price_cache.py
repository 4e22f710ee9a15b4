"""The price cache: the latest mark, index, last price and funding of every symbol, written by
the stream process and read by every process.

Backends: Redis when `settings.REDIS_URL` is set (one hash per symbol, written by one Lua
script per batch), the `PriceCacheEntry` table otherwise (one upsert statement per batch).
Both compare exchange event times inside the write itself, so an update that arrives late (a
reconnect replays, two writers race) never overwrites a newer price.

Readers: `cached_prices` returns entries as they are; `mark_readings` / `mark_price` and
`last_readings` return `PriceReading`s that say how old each price is by exchange time. The
order path, the paper sweep, mark-to-market and the status API read through those, and use a
price for a trade decision only when `reading.fresh` (EXECUTION_STALE_PRICE_SECONDS); otherwise
they fall back to REST or refuse with STALE_PRICE.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import redis
from django.conf import settings
from django.db import connection
from redis.commands.core import Script

from execution.aster.streams.frames import (
    LastPriceUpdate,
    MarkPriceUpdate,
    StreamFrameError,
    decimal,
    price,
    symbol_of,
)
from execution.models import PriceCacheEntry

logger = logging.getLogger(__name__)


def redis_key(symbol: str) -> str:
    """A symbol's hash, under the service's prefix (cache.clear() in tests removes it too)."""
    return f"{settings.REDIS_KEY_PREFIX}:pricecache:{symbol}"


def redis_index_key() -> str:
    """The set of every symbol ever cached (for `cached_prices()` of all)."""
    return f"{settings.REDIS_KEY_PREFIX}:pricecache:symbols"


# An event time this far ahead of receipt is refused: it would pin the symbol's price (no later
# update could ever be "newer") until the exchange's clock caught up, and readers would see the
# pinned price as 0 s old, fresh. So the allowance is kept to clock skew (NTP keeps it far
# below a second), well under EXECUTION_STALE_PRICE_SECONDS; 60 s pinned a fresh-looking price
# for a minute, twice the staleness limit.
MAX_FUTURE_MS = 10_000
STREAM = "stream"
REST = "rest"
PRICE_DIGITS = 18  # the integer digits of a price column (28 digits, 10 of them decimals)
RATE_DIGITS = 10  # ... of the funding rate column (20 digits, 10 decimals)
MAX_TIME_MS = 2**63 - 1  # what the table's bigint time columns hold

rejected_updates = 0  # updates refused as malformed since the process started (for health output)
_rejected_lock = threading.Lock()


@dataclass(frozen=True)
class CachedPrice:
    symbol: str
    mark_price: Decimal | None
    index_price: Decimal | None
    last_price: Decimal | None
    funding_rate: Decimal | None
    next_funding_time_ms: int
    event_time_ms: int  # exchange time of the mark (0: no mark yet)
    last_event_time_ms: int  # exchange time of the last price (0: none yet)
    received_at: datetime


@dataclass(frozen=True)
class PriceReading:
    """One price and how old it is by exchange time. `source` is `stream` (the cache) or `rest`."""

    symbol: str
    value: Decimal
    event_time_ms: int
    age_seconds: float
    source: str = STREAM

    @property
    def fresh(self) -> bool:
        """Usable for a trade decision: no older than EXECUTION_STALE_PRICE_SECONDS."""
        limit: float = settings.EXECUTION_STALE_PRICE_SECONDS
        return self.age_seconds <= limit


# ---------------------------------------------------------------------- the staleness rule


def age_seconds(time_ms: int, now: float | None = None) -> float:
    """How old the exchange's timestamp is; 0 when the reply carried none (nothing to judge)."""
    if not time_ms:
        return 0.0
    return (now if now is not None else time.time()) - time_ms / 1000


def is_stale(time_ms: int, now: float | None = None) -> bool:
    """The one staleness rule: older than EXECUTION_STALE_PRICE_SECONDS."""
    limit: float = settings.EXECUTION_STALE_PRICE_SECONDS
    return age_seconds(time_ms, now) > limit


# ---------------------------------------------------------------------- writers


def store_marks(updates: Sequence[MarkPriceUpdate], *, received_at: datetime) -> set[str]:
    """Write a batch of mark-price updates; an update older (by event time) than the cached one
    is dropped. Returns the symbols whose mark price changed. Malformed updates are refused
    one by one (counted, logged, not written)."""
    valid = _newest_per_symbol(_valid(updates, MarkPriceUpdate, received_at))
    if not valid:
        return set()
    if settings.REDIS_URL:
        return _redis_store(valid.values(), received_at, marks=True)
    return _db_store_marks(list(valid.values()), received_at)


def store_last_prices(updates: Sequence[LastPriceUpdate], *, received_at: datetime) -> set[str]:
    """Write a batch of last-price updates (same rules); returns the symbols whose last price changed."""
    valid = _newest_per_symbol(_valid(updates, LastPriceUpdate, received_at))
    if not valid:
        return set()
    if settings.REDIS_URL:
        return _redis_store(valid.values(), received_at, marks=False)
    return _db_store_last(list(valid.values()), received_at)


Update = MarkPriceUpdate | LastPriceUpdate


def _valid(updates: Sequence[Any], kind: type, received_at: datetime) -> list[Any]:
    now_ms = int(received_at.timestamp() * 1000)
    valid = []
    for update in updates:
        try:
            _check(update, kind, now_ms)
        except StreamFrameError as exc:
            _refuse(update, str(exc))
            continue
        valid.append(update)
    return valid


def _check(update: Any, kind: type, now_ms: int) -> None:
    if not isinstance(update, kind) or not isinstance(update, MarkPriceUpdate | LastPriceUpdate):
        raise StreamFrameError(f"expected a {kind.__name__}, got {type(update).__name__}")
    symbol_of({"s": update.symbol})
    _fits(price({"p": update.mark_price if isinstance(update, MarkPriceUpdate) else update.price}, "p"), PRICE_DIGITS)
    if isinstance(update, MarkPriceUpdate) and update.index_price is not None:
        _fits(price({"i": update.index_price}, "i"), PRICE_DIGITS)
    if isinstance(update, MarkPriceUpdate) and update.funding_rate is not None:
        _fits(decimal({"r": update.funding_rate}, "r"), RATE_DIGITS)
    if isinstance(update, MarkPriceUpdate) and not 0 <= update.next_funding_time_ms <= MAX_TIME_MS:
        # The table's bigint column could not hold it: the whole batch's statement would fail.
        raise StreamFrameError(f"next funding time {update.next_funding_time_ms} is out of range")
    event = update.event_time_ms
    if isinstance(event, bool) or not isinstance(event, int) or event <= 0:
        raise StreamFrameError(f"event time {event!r} is not a positive time in ms")
    if event > now_ms + MAX_FUTURE_MS:
        raise StreamFrameError(f"event time {event} is {(event - now_ms) / 1000:.0f} s in the future")


def _fits(value: Decimal, integer_digits: int) -> None:
    """A value the table's column can hold (one too large would fail the whole batch's statement)."""
    if value != 0 and value.adjusted() >= integer_digits:
        raise StreamFrameError(f"{value} has more than {integer_digits} integer digits")


def _refuse(update: Any, reason: str) -> None:
    global rejected_updates
    with _rejected_lock:
        rejected_updates += 1
    logger.warning("price cache: refused update %r: %s", getattr(update, "symbol", update), reason)


def _newest_per_symbol(updates: list[Any]) -> dict[str, Any]:
    """One update per symbol (the newest): a batch may repeat a symbol, and one upsert
    statement cannot touch a row twice."""
    newest: dict[str, Any] = {}
    for update in updates:
        held = newest.get(update.symbol)
        if held is None or update.event_time_ms > held.event_time_ms:
            newest[update.symbol] = update
    return newest


def _text(value: Decimal | None) -> str:
    """A canonical decimal text (so that 1.50 and 1.5 compare equal), '' for none."""
    return "" if value is None else format(value.normalize(), "f")


# -- Redis

# KEYS: one hash per update, then the symbol index. ARGV: per update, 7 fields (marks) or 4
# (last prices), then the mode. The event-time comparison and the write happen atomically in
# Redis: a late update is dropped there, whatever the order writers arrive in.
_STORE_SCRIPT = """
local mode = ARGV[#ARGV]
local width = mode == 'mark' and 7 or 4
local index = KEYS[#KEYS]
local changed = {}
for i = 1, #KEYS - 1 do
  local a = (i - 1) * width
  local symbol, value, event = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  if mode == 'mark' then
    local old = redis.call('HMGET', KEYS[i], 'E', 'm')
    if event > (tonumber(old[1]) or 0) then
      redis.call('HSET', KEYS[i], 'm', value, 'E', ARGV[a + 3], 'rcv', ARGV[a + 4])
      if ARGV[a + 5] ~= '' then redis.call('HSET', KEYS[i], 'i', ARGV[a + 5]) end
      if ARGV[a + 6] ~= '' then redis.call('HSET', KEYS[i], 'r', ARGV[a + 6]) end
      if ARGV[a + 7] ~= '0' then redis.call('HSET', KEYS[i], 'T', ARGV[a + 7]) end
      redis.call('SADD', index, symbol)
      if old[2] ~= value then table.insert(changed, symbol) end
    end
  else
    local old = redis.call('HMGET', KEYS[i], 'lE', 'l')
    if event > (tonumber(old[1]) or 0) then
      redis.call('HSET', KEYS[i], 'l', value, 'lE', ARGV[a + 3], 'rcv', ARGV[a + 4])
      redis.call('SADD', index, symbol)
      if old[2] ~= value then table.insert(changed, symbol) end
    end
  end
end
return changed
"""

_redis_clients: dict[str, tuple[redis.Redis, Script]] = {}
_redis_lock = threading.Lock()


def _redis() -> redis.Redis:
    return _redis_pair()[0]


def _redis_script() -> Script:
    """The store script, sent once and then called by its SHA (EVALSHA)."""
    return _redis_pair()[1]


def _redis_pair() -> tuple[redis.Redis, Script]:
    url: str = settings.REDIS_URL
    with _redis_lock:
        pair = _redis_clients.get(url)
        if pair is None:
            client = redis.Redis.from_url(url, decode_responses=True)
            # Closed before the interpreter tears its modules down (else redis-py's __del__ prints
            # an "Exception ignored" traceback at every exit of a process that used it).
            atexit.register(client.close)
            pair = _redis_clients[url] = (client, client.register_script(_STORE_SCRIPT))
        return pair


def _redis_store(updates: Iterable[Update], received_at: datetime, *, marks: bool) -> set[str]:
    keys: list[str] = []
    args: list[str] = []
    received = str(received_at.timestamp())
    for update in updates:
        keys.append(redis_key(update.symbol))
        if isinstance(update, MarkPriceUpdate):
            args += [update.symbol, _text(update.mark_price), str(update.event_time_ms), received]
            args += [_text(update.index_price), _text(update.funding_rate), str(update.next_funding_time_ms)]
        else:
            args += [update.symbol, _text(update.price), str(update.event_time_ms), received]
    script = _redis_script()
    changed = script(keys=[*keys, redis_index_key()], args=[*args, "mark" if marks else "last"])
    return set(cast(list[str], changed))


def _redis_read(symbols: Iterable[str] | None) -> dict[str, CachedPrice]:
    client = _redis()
    wanted = sorted(cast(set[str], client.smembers(redis_index_key())) if symbols is None else set(symbols))
    if not wanted:
        return {}
    pipe = client.pipeline(transaction=False)
    for symbol in wanted:
        pipe.hgetall(redis_key(symbol))
    result = {}
    replies: list[dict[str, str]] = pipe.execute()  # type: ignore[no-untyped-call]
    for symbol, fields in zip(wanted, replies, strict=True):
        if fields:
            result[symbol] = _from_redis(symbol, fields)
    return result


def _from_redis(symbol: str, fields: dict[str, str]) -> CachedPrice:
    def number(name: str) -> Decimal | None:
        value = fields.get(name)
        return Decimal(value) if value else None

    return CachedPrice(
        symbol=symbol,
        mark_price=number("m"),
        index_price=number("i"),
        last_price=number("l"),
        funding_rate=number("r"),
        next_funding_time_ms=int(fields.get("T") or 0),
        event_time_ms=int(fields.get("E") or 0),
        last_event_time_ms=int(fields.get("lE") or 0),
        received_at=datetime.fromtimestamp(float(fields.get("rcv") or 0), tz=UTC),
    )


# -- the database table


def _db_store_marks(updates: list[MarkPriceUpdate], received_at: datetime) -> set[str]:
    table = connection.ops.quote_name(PriceCacheEntry._meta.db_table)
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, 0, %s)"] * len(updates))
    params: list[Any] = []
    for u in updates:
        params += [u.symbol, u.mark_price, u.index_price, u.funding_rate]
        params += [u.next_funding_time_ms, u.event_time_ms, _db_time(received_at)]
    # The WHERE of DO UPDATE is the event-time comparison: decided by the database, row by row,
    # so a late batch cannot overwrite a newer one even when two writers race.
    sql = f"""
        INSERT INTO {table} AS c (symbol, mark_price, index_price, funding_rate, next_funding_time_ms,
                                  event_time_ms, last_event_time_ms, received_at)
        VALUES {rows}
        ON CONFLICT (symbol) DO UPDATE SET
            mark_price = excluded.mark_price,
            index_price = COALESCE(excluded.index_price, c.index_price),
            funding_rate = COALESCE(excluded.funding_rate, c.funding_rate),
            next_funding_time_ms = CASE WHEN excluded.next_funding_time_ms > 0
                                        THEN excluded.next_funding_time_ms ELSE c.next_funding_time_ms END,
            event_time_ms = excluded.event_time_ms,
            received_at = excluded.received_at
        WHERE excluded.event_time_ms > c.event_time_ms
        RETURNING symbol
    """
    return _db_upsert(sql, params, updates, column="mark_price", new=lambda u: u.mark_price)


def _db_store_last(updates: list[LastPriceUpdate], received_at: datetime) -> set[str]:
    table = connection.ops.quote_name(PriceCacheEntry._meta.db_table)
    rows = ", ".join(["(%s, %s, %s, 0, 0, %s)"] * len(updates))
    params: list[Any] = []
    for u in updates:
        params += [u.symbol, u.price, u.event_time_ms, _db_time(received_at)]
    sql = f"""
        INSERT INTO {table} AS c (symbol, last_price, last_event_time_ms, event_time_ms, next_funding_time_ms,
                                  received_at)
        VALUES {rows}
        ON CONFLICT (symbol) DO UPDATE SET
            last_price = excluded.last_price,
            last_event_time_ms = excluded.last_event_time_ms,
            received_at = excluded.received_at
        WHERE excluded.last_event_time_ms > c.last_event_time_ms
        RETURNING symbol
    """
    return _db_upsert(sql, params, updates, column="last_price", new=lambda u: u.price)


def _db_upsert(sql: str, params: list[Any], updates: list[Any], *, column: str, new: Any) -> set[str]:
    """The upsert, and which written symbols changed price. The old prices are read first: a
    hint for the reaction only (a race with another writer at worst makes one symbol be
    searched once more or once less; the sweep is the safety net)."""
    symbols = [u.symbol for u in updates]
    old = dict(PriceCacheEntry.objects.filter(symbol__in=symbols).values_list("symbol", column))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written = {row[0] for row in cursor.fetchall()}
    step = Decimal(1).scaleb(-PriceCacheEntry._meta.get_field(column).decimal_places)  # type: ignore[union-attr]
    return {u.symbol for u in updates if u.symbol in written and old.get(u.symbol) != new(u).quantize(step)}


def _db_time(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _db_read(symbols: Iterable[str] | None) -> dict[str, CachedPrice]:
    rows = PriceCacheEntry.objects.all()
    if symbols is not None:
        rows = rows.filter(symbol__in=list(symbols))
    return {
        row.symbol: CachedPrice(
            symbol=row.symbol,
            mark_price=row.mark_price,
            index_price=row.index_price,
            last_price=row.last_price,
            funding_rate=row.funding_rate,
            next_funding_time_ms=row.next_funding_time_ms,
            event_time_ms=row.event_time_ms,
            last_event_time_ms=row.last_event_time_ms,
            received_at=row.received_at,
        )
        for row in rows
    }


# ---------------------------------------------------------------------- readers


def cached_prices(symbols: Iterable[str] | None = None) -> dict[str, CachedPrice]:
    """The cached entries of `symbols` (all when None), as stored: no freshness judged."""
    if symbols is not None:
        symbols = set(symbols)
        if not symbols:
            return {}
    if settings.REDIS_URL:
        return _redis_read(symbols)
    return _db_read(symbols)


def mark_readings(symbols: Iterable[str] | None = None, *, now: datetime | None = None) -> dict[str, PriceReading]:
    """Every cached mark of `symbols` with its age; the caller keeps only `.fresh` ones for a
    trade decision (and falls back to REST for the rest)."""
    at = (now or datetime.now(tz=UTC)).timestamp()
    return {
        symbol: _reading(symbol, entry.mark_price, entry.event_time_ms, at)
        for symbol, entry in cached_prices(symbols).items()
        if entry.mark_price is not None
    }


def last_readings(symbols: Iterable[str] | None = None, *, now: datetime | None = None) -> dict[str, PriceReading]:
    """Every cached last traded price of `symbols` with its age (same rule)."""
    at = (now or datetime.now(tz=UTC)).timestamp()
    return {
        symbol: _reading(symbol, entry.last_price, entry.last_event_time_ms, at)
        for symbol, entry in cached_prices(symbols).items()
        if entry.last_price is not None
    }


def mark_price(symbol: str, *, now: datetime | None = None) -> PriceReading | None:
    """The cached mark of one symbol with its age; None when nothing is cached."""
    return mark_readings([symbol], now=now).get(symbol)


def _reading(symbol: str, value: Decimal, event_time_ms: int, now: float) -> PriceReading:
    return PriceReading(
        symbol=symbol, value=value, event_time_ms=event_time_ms, age_seconds=max(0.0, age_seconds(event_time_ms, now))
    )
