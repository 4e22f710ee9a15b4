"""The request-weight budget (2400 per minute per IP) and rate-limit bans.

The exchange reports the weight used in the current minute in `X-MBX-USED-WEIGHT-1M`.
Before a request the budget checks: are we banned (418) or told to back off (429)? Would this
request push the minute's weight past the slow-down threshold? If so it waits for the next
minute when that is short, and raises AsterRateLimited otherwise.

`LocalWeightBudget` is per process; `RedisWeightBudget` shares the state between processes
(all workers on one host share one IP, hence one budget).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from execution.aster.errors import AsterRateLimited

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


def minute_of(now: float) -> int:
    return int(now // 60)


def seconds_to_next_minute(now: float) -> float:
    return 60 - (now % 60)


def retry_after_seconds(headers: Mapping[str, str], default: float) -> float:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(raw), 0.0) if raw is not None else default
    except ValueError:
        return default


class WeightBudget(Protocol):
    def acquire(self, weight: int) -> None: ...

    def record_response(self, status: int, headers: Mapping[str, str]) -> None: ...

    def block(self, until: float) -> None: ...

    def used_this_minute(self) -> int: ...


class _BudgetRules:
    """What to do with the numbers; storage is the subclass's."""

    def __init__(
        self,
        *,
        limit: int,
        slow_down_at: float = 0.9,
        max_wait: float = 5.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.threshold = math.floor(limit * slow_down_at)
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep

    # storage interface
    def _blocked_until(self) -> float:
        raise NotImplementedError

    def _block_until(self, until: float) -> None:
        raise NotImplementedError

    def _used(self, minute: int) -> int:
        raise NotImplementedError

    def _add(self, minute: int, weight: int) -> int:
        raise NotImplementedError

    def _observe(self, minute: int, used: int) -> None:
        raise NotImplementedError

    def acquire(self, weight: int) -> None:
        now = self.clock()
        blocked_until = self._blocked_until()
        if blocked_until > now:
            raise AsterRateLimited(
                f"rate limited: no requests until {blocked_until:.0f} (in {blocked_until - now:.1f} s)",
                retry_at=blocked_until,
            )
        minute = minute_of(now)
        if self._used(minute) + weight > self.threshold:
            wait = seconds_to_next_minute(now)
            if wait > self.max_wait:
                raise AsterRateLimited(
                    f"request weight budget nearly spent ({self._used(minute)}/{self.limit} this minute)",
                    retry_at=now + wait,
                )
            self.sleep(wait)
            minute = minute_of(self.clock())
        self._add(minute, weight)

    def used_this_minute(self) -> int:
        """The request weight used in the current minute (as counted here or reported by the exchange)."""
        return self._used(minute_of(self.clock()))

    def block(self, until: float) -> None:
        """No requests before `until` (epoch seconds), e.g. the end of a 418 ban."""
        self._block_until(until)

    def record_response(self, status: int, headers: Mapping[str, str]) -> None:
        now = self.clock()
        used = headers.get(WEIGHT_HEADER) or headers.get(WEIGHT_HEADER.lower())
        if used is not None and str(used).isdigit():
            self._observe(minute_of(now), int(used))
        if status == 429:
            self._block_until(now + retry_after_seconds(headers, seconds_to_next_minute(now)))
        elif status == 418:
            self._block_until(now + retry_after_seconds(headers, 120.0))


class LocalWeightBudget(_BudgetRules):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._minute = -1
        self._weight = 0
        self._blocked = 0.0

    def _blocked_until(self) -> float:
        return self._blocked

    def _block_until(self, until: float) -> None:
        with self._lock:
            self._blocked = max(self._blocked, until)

    def _used(self, minute: int) -> int:
        return self._weight if minute == self._minute else 0

    def _add(self, minute: int, weight: int) -> int:
        with self._lock:
            if minute != self._minute:
                self._minute, self._weight = minute, 0
            self._weight += weight
            return self._weight

    def _observe(self, minute: int, used: int) -> None:
        with self._lock:
            if minute != self._minute:
                self._minute, self._weight = minute, 0
            self._weight = max(self._weight, used)


# KEYS[1] = weight key; ARGV[1] = observed weight. Keeps the larger value (responses may
# arrive out of order) and expires the key after its minute.
_OBSERVE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local observed = tonumber(ARGV[1])
if observed > current then
  redis.call('SET', KEYS[1], observed, 'EX', 120)
end
return math.max(current, observed)
"""


# KEYS[1] = blocked-until key, KEYS[2] = this minute's weight key; ARGV = now, weight, threshold.
# The whole check-and-count of `acquire` in one round trip, atomic across workers. Returns
# {0, used after counting} | {1, blocked until} | {2, used (the request would pass the threshold)};
# numbers as strings (Lua would truncate a float).
_ACQUIRE_SCRIPT = """
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > tonumber(ARGV[1]) then
  return {1, tostring(blocked)}
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  return {2, tostring(used)}
end
used = redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], 120)
return {0, tostring(used)}
"""


class RedisWeightBudget(_BudgetRules):
    """The same rules, with state in Redis under `prefix` (one prefix per exchange host/IP).

    One Redis round trip per request: `acquire` is one Lua script (banned? over the threshold?
    count it), and `record_response` writes the exchange's figure only when it is above what
    this process last counted in the same minute (the stored count only grows within a minute,
    so a figure at or below it would change nothing)."""

    def __init__(self, redis_client: object, *, prefix: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._redis = redis_client
        self._prefix = prefix
        self._observe_script = redis_client.register_script(_OBSERVE_SCRIPT)  # type: ignore[attr-defined]
        self._acquire_script = redis_client.register_script(_ACQUIRE_SCRIPT)  # type: ignore[attr-defined]
        self._counted = threading.local()  # (minute, the count this thread's last acquire saw)

    def acquire(self, weight: int) -> None:
        now = self.clock()
        minute = minute_of(now)
        keys = [f"{self._prefix}:blocked_until", self._key(minute)]
        status, value = self._acquire_script(keys=keys, args=[repr(now), weight, self.threshold])
        if int(status) == 1:
            blocked_until = float(value)
            raise AsterRateLimited(
                f"rate limited: no requests until {blocked_until:.0f} (in {blocked_until - now:.1f} s)",
                retry_at=blocked_until,
            )
        if int(status) == 2:
            wait = seconds_to_next_minute(now)
            if wait > self.max_wait:
                raise AsterRateLimited(
                    f"request weight budget nearly spent ({int(value)}/{self.limit} this minute)",
                    retry_at=now + wait,
                )
            self.sleep(wait)
            minute = minute_of(self.clock())
            value = self._add(minute, weight)
        self._counted.seen = (minute, int(value))

    def record_response(self, status: int, headers: Mapping[str, str]) -> None:
        used = headers.get(WEIGHT_HEADER) or headers.get(WEIGHT_HEADER.lower())
        seen = getattr(self._counted, "seen", None)
        no_news = (
            status not in (418, 429)
            and used is not None
            and str(used).isdigit()
            and seen is not None
            and seen[0] == minute_of(self.clock())
            and int(used) <= seen[1]
        )
        if no_news:
            return  # the stored count is already at least this
        super().record_response(status, headers)

    def _key(self, minute: int) -> str:
        return f"{self._prefix}:weight:{minute}"

    def _blocked_until(self) -> float:
        raw = self._redis.get(f"{self._prefix}:blocked_until")  # type: ignore[attr-defined]
        return float(raw) if raw else 0.0

    def _block_until(self, until: float) -> None:
        ttl_ms = max(int((until - self.clock()) * 1000), 1)
        key = f"{self._prefix}:blocked_until"
        current = self._blocked_until()
        if until > current:
            self._redis.set(key, repr(until), px=ttl_ms)  # type: ignore[attr-defined]

    def _used(self, minute: int) -> int:
        raw = self._redis.get(self._key(minute))  # type: ignore[attr-defined]
        return int(raw) if raw else 0

    def _add(self, minute: int, weight: int) -> int:
        pipe = self._redis.pipeline()  # type: ignore[attr-defined]
        pipe.incrby(self._key(minute), weight)
        pipe.expire(self._key(minute), 120)
        total, _ = pipe.execute()
        return int(total)

    def _observe(self, minute: int, used: int) -> None:
        self._observe_script(keys=[self._key(minute)], args=[used])
