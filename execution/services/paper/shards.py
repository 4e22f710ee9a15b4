"""Running the sweep in shards on Celery: the beat's fan-out order, and a lease per shard.

With PAPER_SWEEP_SHARDS = N > 1 the beat enqueues one task per shard each interval, each
expiring with the interval. Two rules keep every shard swept when the workers cannot keep up:

- The fan-out puts the shard swept longest ago first (its heartbeat), ties broken in an order
  that starts at another shard each beat (a counter in the cache). In a FIFO queue whose
  messages expire, a fixed order gives the first shards the free workers every time and lets
  the last shards' messages expire, beat after beat: those shards would never run.
- A shard already running is neither queued again nor run twice: its sweep holds a lease (the
  cache's atomic add, SET NX with an expiry on Redis), a second message of the shard returns at
  once, and the fan-out skips the shards whose lease is held. The lease saves the workers'
  time; it is not what makes the sweep safe: two sweeps of one shard at once are safe (each
  order is claimed exactly once, `triggers.claim`). That is also why a lease per process is
  enough without Redis (LocMemCache, development). A worker that dies mid-sweep leaves its lease
  to lapse after PAPER_RECLAIM_SECONDS, when its claimed orders are re-claimed too.

Each shard records its own heartbeat (`health.sweep_heartbeat`), and readiness requires every
shard of the configured N to be fresh.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache

from execution.models import Heartbeat
from execution.services.health import sweep_heartbeat

T = TypeVar("T")

ROTATION_KEY = "paper-sweep:fan-out"


def lease_key(shard: int, shards: int) -> str:
    return f"paper-sweep:lease:{shard}/{shards}"


def lease_seconds() -> int:
    """How long a shard's lease lasts unless released: PAPER_RECLAIM_SECONDS (whole seconds, at
    least one: the Redis cache truncates a timeout to whole seconds, and 0 would expire it)."""
    return max(1, math.ceil(settings.PAPER_RECLAIM_SECONDS))


def fan_out_order(shards: int) -> list[int]:
    """The shards in the order the beat enqueues them: the one swept longest ago first (never
    swept: first of all), ties in an order that starts one shard further on each beat; the
    shards running now are left out (they are being swept; a second message would only wait).
    Oldest first rather than a plain rotation: workers that finish between two beats take
    the next message at once, out of step with a rotation by one shard per beat, which then
    hands them shards swept a moment ago while others wait twice their turn."""
    start = _next_start(shards)
    running = running_shards(shards)
    last = last_swept(shards)
    rotation = [(start + i) % shards for i in range(shards)]
    waiting = [shard for shard in rotation if shard not in running]
    # Never swept sorts first; `sorted` is stable, so ties keep the rotation's order.
    return sorted(waiting, key=lambda shard: (shard in last, last.get(shard)))


def last_swept(shards: int) -> dict[int, datetime]:
    """When each shard's last sweep finished (its heartbeat; one query)."""
    names = {sweep_heartbeat(shard, shards): shard for shard in range(shards)}
    return {names[name]: at for name, at in Heartbeat.objects.filter(name__in=names).values_list("name", "beat_at")}


def _next_start(shards: int) -> int:
    cache.add(ROTATION_KEY, 0, timeout=None)
    try:
        beat = cache.incr(ROTATION_KEY)
    except ValueError:  # evicted between the add and the incr: start anywhere, next beat moves on
        beat = 1
    return (beat - 1) % shards


def running_shards(shards: int) -> set[int]:
    """The shards whose lease is held (one cache round trip)."""
    keys = {lease_key(shard, shards): shard for shard in range(shards)}
    return {keys[key] for key in cache.get_many(list(keys))}


def take_lease(shard: int, shards: int) -> str | None:
    """The lease of `shard` of `shards`: a token to release it with, or None when it is held."""
    token = uuid.uuid4().hex
    return token if cache.add(lease_key(shard, shards), token, timeout=lease_seconds()) else None


def release_lease(shard: int, shards: int, token: str) -> None:
    """Release the lease taken with `token`, and only that one. Between the read and the delete
    another sweep can take a lease that lapsed while this sweep overran it; deleting that one
    lets a third sweep of the shard run beside it: harmless (claims are exactly once), rare."""
    key = lease_key(shard, shards)
    if cache.get(key) == token:
        cache.delete(key)


def run_leased(shard: int, shards: int, sweep: Callable[[], T]) -> T | None:
    """`sweep()` under the shard's lease; None, without running it, when the shard is running."""
    token = take_lease(shard, shards)
    if token is None:
        return None
    try:
        return sweep()
    finally:
        release_lease(shard, shards, token)
