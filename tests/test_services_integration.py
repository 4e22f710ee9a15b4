"""Tests that need the real services (PostgreSQL, Redis): a skip here is a failure in CI."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, close_old_connections, connection

from execution.models import Position
from tests.factories import PaperAccountFactory


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_opens_of_the_same_symbol_leave_exactly_one_open_position():
    account = PaperAccountFactory()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def open_position() -> None:
        try:
            barrier.wait()
            Position.objects.create(
                account=account, symbol="BTCUSDT", side="LONG", quantity=Decimal("1"), entry_price=1, leverage=1
            )
            outcomes.append("opened")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=open_position) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["opened", "refused", "refused", "refused"]
    assert Position.objects.filter(account=account, status="open").count() == 1


@pytest.mark.redis
def test_celery_round_trip_through_the_redis_broker(settings):
    import redis
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"test:celery:{uuid.uuid4().hex}"

    @app.task(name=f"tests.mark_{uuid.uuid4().hex}")
    def mark(redis_key: str) -> None:
        redis.Redis.from_url(settings.REDIS_URL).set(redis_key, "done", ex=60)

    try:
        with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
            mark.delay(key)
            for _ in range(100):
                if client.get(key):
                    break
                threading.Event().wait(0.05)
        assert client.get(key) == b"done"
    finally:
        client.delete(key)
