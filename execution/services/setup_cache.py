"""What the live adapter remembers of each venue account between orders.

Two kinds of memory, by who can change what is remembered:

- Held in the process (`SETUP`): the account's position mode and Multi-Assets mode, the
  symbols' leverage brackets and the short-lived balance. Every process sets the modes to the
  same value (one-way, single-asset), so no process can make another's memory wrong; held here
  they cost no round trip. Each process learns them once (the set-up calls are idempotent: the
  exchange answers "no need to change", -4046/-4059, which the client counts as success), so K
  worker processes cost K look-ups an hour instead of one, far inside the weight budget.
- Shared by every process (`SHARED_SETUP`: Redis when REDIS_URL is set, else Django's cache):
  the margin type and the leverage of each (account, symbol). These differ between orders (a
  leverage per order, a margin type per account row), so one process's order can change what
  the venue holds under another's memory: worker A sets leverage 5 and remembers it, worker B
  sets 10 on the same symbol, and A's next order at 5 would go out at 10 while its risk checks,
  margin, liquidation price and stop-before-liquidation assumed 5. So the value stored is the one
  the venue holds, written by whichever process set it last, and read on every live order (both
  flags in one round trip, `SharedSetup.get_many`).

What keeps a remembered value right:
- keys name what they depend on: the modes key carries the account's margin type, and the
  margin/leverage flags store the value set, compared with the order's own, so an account whose
  margin type or an order whose leverage differs sets it again;
- an order the venue refuses in a way that says the set-up is not what we remember (position
  side -4060/-4061/-4062, leverage -2027/-2028, margin type -4047/-4048) forgets the account's
  flags, and every refusal forgets its balance (`LiveExecutionAdapter.forget_setup`);
- a mode refusal is kept only MODE_RETRY_SECONDS, so an account its owner fixes trades soon;
- `reset_exchange_clients()` (settings changed, tests) forgets what the process holds.

What the shared flags do not close: two orders on one (account, symbol) with different
leverages, in flight at the same moment in two processes. Between A's read of the flag and
A's order reaching the venue (one request's time), B may set another leverage. Closing that
needs a per-(account, symbol) lease held from the read to the send (shared by orders at the
venue's value, exclusive for a change); it is not built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache

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


class SharedSetup:
    """String flags every process of the service reads and writes: Redis when
    settings.REDIS_URL is set (keys under REDIS_KEY_PREFIX, so the prefix-scoped cache clear
    removes them), else Django's default cache (in-process without Redis: one process)."""

    @staticmethod
    def _key(key: str) -> str:
        return f"{settings.REDIS_KEY_PREFIX}:{key}"

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The flags found, in one round trip (MGET)."""
        if settings.REDIS_URL:
            values = _redis_client().mget([self._key(k) for k in keys])
            return {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        return {k: str(v) for k, v in cache.get_many(list(keys)).items()}

    def set(self, key: str, value: str, *, ttl: int) -> None:
        if settings.REDIS_URL:
            _redis_client().set(self._key(key), value, ex=ttl)
        else:
            cache.set(key, value, timeout=ttl)

    def delete_many(self, keys: Sequence[str]) -> None:
        if settings.REDIS_URL:
            _redis_client().delete(*[self._key(k) for k in keys])
        else:
            cache.delete_many(list(keys))


SHARED_SETUP = SharedSetup()
