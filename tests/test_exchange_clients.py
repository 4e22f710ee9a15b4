import time
import uuid

import pytest

from execution.aster.errors import AsterRateLimited
from execution.aster.ratelimit import RedisWeightBudget
from execution.exceptions import ExecutionError
from execution.services.exchange import account_credentials, client_for_account, public_client, reset_exchange_clients
from tests.factories import DEMO_V3_SIGNER, LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory


@pytest.fixture(autouse=True)
def fresh_clients():
    reset_exchange_clients()
    yield
    reset_exchange_clients()


@pytest.mark.django_db
def test_clients_are_built_from_account_credentials(settings):
    settings.ASTER_CHAIN_ID = 714
    v1 = client_for_account(LiveV1AccountFactory())
    v3 = client_for_account(LiveV3AccountFactory())
    assert (v1.api_version, v3.api_version) == ("v1", "v3")
    credentials = account_credentials(LiveV3AccountFactory())
    assert credentials.chain_id == 714 and credentials.signer == DEMO_V3_SIGNER
    with pytest.raises(ExecutionError, match="paper"):
        client_for_account(PaperAccountFactory())


def test_public_client_is_shared_in_the_process():
    assert public_client() is public_client()


@pytest.mark.redis
def test_rate_limit_backoff_is_shared_between_processes_through_redis(settings):
    import redis

    prefix = f"test:aster:{uuid.uuid4().hex}"
    connection = redis.Redis.from_url(settings.REDIS_URL)
    first = RedisWeightBudget(connection, prefix=prefix, limit=2400)
    second = RedisWeightBudget(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix, limit=2400)
    try:
        second.acquire(1)
        first.record_response(429, {"Retry-After": "30"})
        with pytest.raises(AsterRateLimited) as caught:
            second.acquire(1)
        assert caught.value.retry_at == pytest.approx(time.time() + 30, abs=2)
    finally:
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)


@pytest.mark.redis
def test_weight_used_is_shared_between_processes_through_redis(settings):
    import redis

    prefix = f"test:aster:{uuid.uuid4().hex}"
    connection = redis.Redis.from_url(settings.REDIS_URL)
    clock = lambda: 1_700_000_000.0  # noqa: E731 - 40 s before the minute ends
    first = RedisWeightBudget(connection, prefix=prefix, limit=2400, clock=clock)
    second = RedisWeightBudget(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix, limit=2400, clock=clock)
    try:
        first.record_response(200, {"X-MBX-USED-WEIGHT-1M": "2150"})
        first.record_response(200, {"X-MBX-USED-WEIGHT-1M": "900"})  # an older reply arriving late
        second.acquire(5)
        with pytest.raises(AsterRateLimited, match="budget"):
            second.acquire(10)  # 2155 + 10 > 2160 (90% of 2400)
    finally:
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)


class CountingRedis:
    """A Redis client that counts the commands sent (each one a round trip here)."""

    def __init__(self, client):
        self.client, self.commands = client, 0

    def register_script(self, script):
        return self.client.register_script(script).__class__(self, script)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def execute_command(self, *args, **options):
        self.commands += 1
        return self.client.execute_command(*args, **options)

    def evalsha(self, *args):
        self.commands += 1
        return self.client.evalsha(*args)


@pytest.mark.redis
def test_the_shared_budget_costs_one_redis_round_trip_per_request(settings):
    import redis

    prefix = f"test:aster:{uuid.uuid4().hex}"
    connection = redis.Redis.from_url(settings.REDIS_URL)
    counting = CountingRedis(redis.Redis.from_url(settings.REDIS_URL))
    budget = RedisWeightBudget(counting, prefix=prefix, limit=2400)
    try:
        budget.acquire(1)  # loads the script (NOSCRIPT) once
        counting.commands = 0
        for _ in range(10):
            budget.acquire(5)
            budget.record_response(200, {"X-MBX-USED-WEIGHT-1M": str(budget.used_this_minute())})
        assert counting.commands == 10  # one EVALSHA per request; a reply with no news sends nothing
        budget.record_response(200, {"X-MBX-USED-WEIGHT-1M": "2000"})  # news: another IP user, recorded
        assert budget.used_this_minute() == 2000
    finally:
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)


@pytest.mark.redis
def test_the_shared_budget_counts_exactly_under_concurrency(settings):
    import threading

    import redis

    prefix = f"test:aster:{uuid.uuid4().hex}"
    connection = redis.Redis.from_url(settings.REDIS_URL)
    clock = lambda: 1_700_000_000.0  # noqa: E731 - 40 s before the minute ends: no waiting
    budgets = [
        RedisWeightBudget(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix, limit=1000, clock=clock)
        for _ in range(4)
    ]
    refused: list[int] = []

    def worker(budget: RedisWeightBudget) -> None:
        for _ in range(100):
            try:
                budget.acquire(3)
            except AsterRateLimited:
                refused.append(1)

    try:
        threads = [threading.Thread(target=worker, args=(b,)) for b in budgets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        used = budgets[0].used_this_minute()
        # 400 requests of 3 against a threshold of 900: exactly 300 counted, the rest refused.
        assert used == 900 and len(refused) == 100
    finally:
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)
