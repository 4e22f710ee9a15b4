"""Django's Redis cache, with a `clear()` that deletes only this service's keys.

Django's own RedisCache.clear() runs FLUSHDB: it would wipe every key of the Redis database,
including other services' (or another test run's). Here every key carries KEY_PREFIX
(settings.REDIS_KEY_PREFIX), and clear() deletes the keys under that prefix alone: the cache's,
and the service's raw keys that use the same prefix (the exchange weight budget, the price cache).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache

SCAN_BATCH = 1000


class PrefixScopedRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        if not self.key_prefix:
            raise ValueError("PrefixScopedRedisCache needs a KEY_PREFIX: clear() deletes only keys under it")

    def clear(self) -> None:
        client = self._cache.get_client(write=True)  # type: ignore[attr-defined]  # django-stubs omit it
        pattern = f"{self.key_prefix}:*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
