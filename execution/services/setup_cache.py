"""What the live adapter remembers of each venue account between orders, held in the process.

The venue account's set-up (position mode, Multi-Assets mode, margin type and leverage per
symbol), the symbols' leverage brackets and the short-lived balance are read on every live
order. Held in Redis they cost a round trip or two per order; held here, none. Each process
learns them once (the set-up calls are idempotent: the exchange answers "no need to change",
-4046/-4059, which the client counts as success), so K worker processes cost K look-ups an hour
instead of one, far inside the weight budget.

What keeps a remembered value right:
- keys name what they depend on: the modes key carries the account's margin type, and the
  margin/leverage flags store the value set, compared with the order's own, so an account whose
  margin type or an order whose leverage differs sets it again;
- an order the venue refuses in a way that says the set-up is not what we remember (position
  side -4060/-4061/-4062, leverage -2027/-2028, margin type -4047/-4048) forgets the account's
  flags, and every refusal forgets its balance (`LiveExecutionAdapter.forget_setup`);
- a mode refusal is kept only MODE_RETRY_SECONDS, so an account its owner fixes trades soon;
- `reset_exchange_clients()` (settings changed, tests) forgets everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

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
