"""Building AsterDEX clients from settings and accounts.

One weight budget per process (or one shared through Redis when REDIS_URL is set: every
worker on a host shares the host's IP, hence its 2400-per-minute budget), and one public
client per process so that exchangeInfo's cache and keep-alive connections are shared.
"""

from __future__ import annotations

import atexit
import threading
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

from accounts.models import Account
from execution.aster.client import AsterClient, ExchangeInfoCache
from execution.aster.ratelimit import LocalWeightBudget, RedisWeightBudget, WeightBudget
from execution.aster.signing import Credentials, v1_credentials, v3_credentials
from execution.exceptions import ExecutionError
from execution.services.setup_cache import SETUP, SYMBOL_SETUP

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _budget_for(base_url: str, redis_url: str, limit: int, key_prefix: str) -> WeightBudget:
    if redis_url:
        import redis

        host = urlsplit(base_url).netloc or base_url
        client = redis.Redis.from_url(redis_url)
        atexit.register(client.close)  # before the interpreter tears down (no "Exception ignored" at exit)
        return RedisWeightBudget(client, prefix=f"{key_prefix}:aster:{host}", limit=limit)
    return LocalWeightBudget(limit=limit)


@lru_cache(maxsize=4)
def _info_cache_for(base_url: str, ttl: float) -> ExchangeInfoCache:
    return ExchangeInfoCache(ttl)


def weight_budget() -> WeightBudget:
    return _budget_for(
        settings.ASTER_BASE_URL, settings.REDIS_URL, settings.ASTER_WEIGHT_LIMIT_1M, settings.REDIS_KEY_PREFIX
    )


def _client(credentials: Credentials | None) -> AsterClient:
    return AsterClient(
        settings.ASTER_BASE_URL,
        credentials,
        connect_timeout=settings.ASTER_CONNECT_TIMEOUT,
        read_timeout=settings.ASTER_READ_TIMEOUT,
        recv_window_ms=settings.ASTER_RECV_WINDOW_MS,
        exchange_info_ttl=settings.ASTER_EXCHANGE_INFO_TTL,
        budget=weight_budget(),
        info_cache=_info_cache_for(settings.ASTER_BASE_URL, settings.ASTER_EXCHANGE_INFO_TTL),
    )


@lru_cache(maxsize=4)
def _public_client(base_url: str) -> AsterClient:
    return _client(None)


def public_client() -> AsterClient:
    """The process-wide client for market data (no credentials)."""
    with _lock:
        return _public_client(settings.ASTER_BASE_URL)


def account_credentials(account: Account) -> Credentials:
    if account.is_paper_trading:
        raise ExecutionError(f"account {account.pk} is a paper account: it has no exchange credentials")
    if account.api_version == "v1":
        return v1_credentials(account.api_key, account.api_secret)
    if account.api_version == "v3":
        return v3_credentials(
            user=account.wallet_address,
            signer=account.signer_address,
            private_key=account.signer_private_key,
            chain_id=settings.ASTER_CHAIN_ID,
        )
    raise ExecutionError(f"account {account.pk} has no usable credentials (api_version {account.api_version!r})")


def client_for_account(account: Account) -> AsterClient:
    """A signed client for a live account (sharing the process's weight budget)."""
    return _client(account_credentials(account))


def reset_exchange_clients() -> None:
    """Forget cached clients and budgets, and what live adapters remember of venue accounts
    (settings changed, e.g. in tests)."""
    SETUP.clear()
    SYMBOL_SETUP.clear_local()
    _public_client.cache_clear()
    _budget_for.cache_clear()
    _info_cache_for.cache_clear()
