"""What the live adapter remembers of each venue account between orders.

Two kinds of memory, by who can change what is remembered:

- Held in the process (`SETUP`): the account's position mode and Multi-Assets mode, the
  symbols' leverage brackets and the short-lived balance. Every process sets the modes to the
  same value (one-way, single-asset), so no process can make another's memory wrong; held here
  they cost no round trip. Each process learns them once (the set-up calls are idempotent: the
  exchange answers "no need to change", -4046/-4059, which the client counts as success), so K
  worker processes cost K look-ups an hour instead of one, far inside the weight budget.
- Shared by every process (`SYMBOL_SETUP`: Redis when REDIS_URL is set, else in the process):
  the margin type and the leverage of each (account, symbol). These differ between orders (a
  leverage per order, a margin type per account row), so one process's order can change what
  the venue holds under another's memory: worker A sets leverage 5 and remembers it, worker B
  sets 10 on the same symbol, and A's next order at 5 would go out at 10 while its risk checks,
  margin, liquidation price and stop-before-liquidation assumed 5. So what is stored is the
  value the venue holds, written by whichever process set it, read on every live order (one
  round trip), and held as a lease: an order is registered as in flight on the value until its
  send is answered, and a change waits until no order is in flight on the old value (see
  `SymbolSetup`), so not even two orders at once in two processes can disagree with the venue.

What keeps a remembered value right:
- keys name what they depend on: the modes key carries the account's margin type, and the
  margin/leverage flags store the value set, compared with the order's own, so an account whose
  margin type or an order whose leverage differs sets it again;
- an order the venue refuses in a way that says the set-up is not what we remember (position
  side -4060/-4061/-4062, leverage -2027/-2028, margin type -4047/-4048) forgets the account's
  modes and the symbol's margin type and leverage, and every refusal forgets its balance
  (`LiveExecutionAdapter.forget_setup`);
- a mode refusal is kept only MODE_RETRY_SECONDS, so an account its owner fixes trades soon;
- `reset_exchange_clients()` (settings changed, tests) forgets what the process holds (Redis's
  part lapses: the value after HELD_TTL, a dead worker's claim after IN_FLIGHT_TTL).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from execution.exceptions import ExecutionError

logger = logging.getLogger(__name__)

MISSING = object()


class ProcessCache:
    """A small thread-safe TTL map (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[Any, float]] = {}

    def get(self, key: str, default: Any = None) -> Any:
        found = self._values.get(key)
        if found is None:
            return default
        value, expires = found
        if expires <= self._clock():
            with self._lock:
                self._values.pop(key, None)
            return default
        return value

    def set(self, key: str, value: Any, *, ttl: float) -> None:
        with self._lock:
            self._values[key] = (value, self._clock() + ttl)

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k.startswith(prefix)]:
                del self._values[key]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


SETUP = ProcessCache()


def _redis_client() -> Any:
    """The process's client for the service's raw Redis keys (the price cache's: one pool)."""
    from execution.services.price_cache import _redis

    return _redis()


# --------------------------------------------------------------------------- per-symbol set-up

HELD_TTL = 3600  # what the venue holds is trusted an hour, then set again
IN_FLIGHT_TTL = 30.0  # an order's claim, or a change, lapses after this (a dead worker's)
OK, CHANGE, BUSY = 0, 1, 2


@dataclass(frozen=True)
class SetupClaim:
    """The answer to `SymbolSetup.claim`: OK (the venue holds what the order wants; the order
    is in flight on it until `release`), CHANGE (this order may set it: nobody is in flight on
    another value; `settle` after the venue's calls, or `abandon`), BUSY (another value is in
    use or being set: wait). `held`: the venue's value as last written ("MARGIN:LEVERAGE", or "")."""

    status: int
    held: str
    token: str


def setup_value(margin_type: str, leverage: int) -> str:
    return f"{margin_type}:{leverage}"


_CLAIM_SCRIPT = """
-- KEYS[1]: the hash (held, changing_until), KEYS[2]: the orders in flight (token -> deadline)
-- ARGV: wanted value, token, now, deadline, in-flight ttl (s), held ttl (s)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local held = redis.call('HGET', KEYS[1], 'held') or ''
local changing = tonumber(redis.call('HGET', KEYS[1], 'changing_until') or '0')
if changing > tonumber(ARGV[3]) then return {2, held} end
if held == ARGV[1] then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return {0, held}
end
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'changing_until', ARGV[4])
  if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
  return {1, held}
end
return {2, held}
"""

_SETTLE_SCRIPT = """
-- KEYS as above; ARGV: the value the venue now holds, token, deadline, in-flight ttl, held ttl
redis.call('HSET', KEYS[1], 'held', ARGV[1])
redis.call('HDEL', KEYS[1], 'changing_until')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


@contextmanager
def _before_the_send(key: str) -> Iterator[None]:
    """The store unreachable before the order goes out: a refusal with nothing sent (the intent
    is rejected at once, not left in flight for reconciliation)."""
    try:
        yield
    except RedisError as exc:
        raise ExecutionError(
            f"{key}: the shared set-up store is unreachable ({type(exc).__name__}); not sent",
            code="SETUP_UNAVAILABLE",
        ) from exc


@contextmanager
def _best_effort(what: str, key: str) -> Iterator[None]:
    """After the answer (or on a failure path) the store is only tidied: unreachable, what was
    written lapses by itself (IN_FLIGHT_TTL, HELD_TTL). Never let it hide the order's outcome."""
    try:
        yield
    except RedisError as exc:
        logger.warning("set-up store unreachable on %s of %s (%s); it lapses by itself", what, key, exc)


class SymbolSetup:
    """The margin type and leverage the venue holds for each (account, symbol), shared by every
    process, with the orders in flight on it: a reader/writer lease.

    Why a lease and not just a shared flag: between one worker's read of the flag and its order
    reaching the venue, another worker could set another leverage, and the first order would go
    out at it (its risk checks, margin, liquidation price and stop-before-liquidation assumed
    its own). So an order at the value the venue holds is registered as in flight on it (shared)
    until its send is answered, and a change (exclusive) is allowed only when no order is in
    flight on the old value; meanwhile orders that want another value wait. Claims lapse after
    IN_FLIGHT_TTL (a worker that died holding one), and the value after HELD_TTL.

    Redis when settings.REDIS_URL is set (one script call per order before the wire, one after
    the answer), else in the process (a lock and a dict: without Redis there is one process)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, Any]] = {}
        self._scripts: dict[int, tuple[Any, Any]] = {}

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [f"{settings.REDIS_KEY_PREFIX}:{key}", f"{settings.REDIS_KEY_PREFIX}:{key}:orders"]

    def _redis_scripts(self) -> tuple[Any, Any]:
        client = _redis_client()
        found = self._scripts.get(id(client))
        if found is None:
            found = self._scripts[id(client)] = (
                client.register_script(_CLAIM_SCRIPT),
                client.register_script(_SETTLE_SCRIPT),
            )
        return found

    def claim(self, key: str, wanted: str) -> SetupClaim:
        token = uuid.uuid4().hex
        now = self._clock()
        if settings.REDIS_URL:
            with _before_the_send(key):
                claim_script, _ = self._redis_scripts()
                status, held = claim_script(
                    keys=self._keys(key), args=[wanted, token, now, now + IN_FLIGHT_TTL, int(IN_FLIGHT_TTL), HELD_TTL]
                )
            return SetupClaim(int(status), str(held), token)
        with self._lock:
            state = self._state(key, now)
            orders: dict[str, float] = state["orders"]
            if state["changing_until"] > now:
                return SetupClaim(BUSY, state["held"], token)
            if state["held"] == wanted:
                orders[token] = now + IN_FLIGHT_TTL
                return SetupClaim(OK, state["held"], token)
            if not orders:
                state["changing_until"] = now + IN_FLIGHT_TTL
                return SetupClaim(CHANGE, state["held"], token)
            return SetupClaim(BUSY, state["held"], token)

    def _state(self, key: str, now: float) -> dict[str, Any]:
        """The in-process state of `key` (the caller holds the lock), lapsed parts dropped."""
        state = self._local.get(key)
        if state is None or state["held_until"] <= now:
            state = self._local[key] = {
                "held": "",
                "held_until": now + HELD_TTL,
                "changing_until": 0.0,
                "orders": state["orders"] if state else {},
            }
        state["orders"] = {t: d for t, d in state["orders"].items() if d > now}
        return state

    def settle(self, key: str, claim: SetupClaim, held: str) -> None:
        """The venue now holds `held` (set by this claim): the change ends and the claim's order
        is in flight on it."""
        now = self._clock()
        if settings.REDIS_URL:
            with _before_the_send(key):
                _, settle_script = self._redis_scripts()
                settle_script(
                    keys=self._keys(key), args=[held, claim.token, now + IN_FLIGHT_TTL, int(IN_FLIGHT_TTL), HELD_TTL]
                )
            return
        with self._lock:
            state = self._state(key, now)
            state.update(held=held, held_until=now + HELD_TTL, changing_until=0.0)
            state["orders"][claim.token] = now + IN_FLIGHT_TTL

    def abandon(self, key: str) -> None:
        """A change failed: what the venue holds is unknown; others may set it."""
        if settings.REDIS_URL:
            with _best_effort("abandon", key):
                _redis_client().hdel(self._keys(key)[0], "held", "changing_until")
            return
        with self._lock:
            self._local.pop(key, None)

    def release(self, key: str, claim: SetupClaim) -> None:
        """The claim's order was answered: it no longer needs the value to stay."""
        if settings.REDIS_URL:
            with _best_effort("release", key):
                _redis_client().zrem(self._keys(key)[1], claim.token)
            return
        with self._lock:
            state = self._local.get(key)
            if state is not None:
                state["orders"].pop(claim.token, None)

    def forget(self, key: str) -> None:
        """The venue may not hold what was written (a refusal said so): the next order sets it."""
        if settings.REDIS_URL:
            _redis_client().hdel(self._keys(key)[0], "held")
            return
        with self._lock:
            state = self._local.get(key)
            if state is not None:
                state["held"] = ""

    def clear_local(self) -> None:
        with self._lock:
            self._local.clear()


SYMBOL_SETUP = SymbolSetup()
