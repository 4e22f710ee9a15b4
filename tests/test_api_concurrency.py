"""Issue #10, item 10: one idempotency key sent by many clients at once is one decision, and
every client gets it (200 or 201), never an error. PostgreSQL: real concurrent transactions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Decision
from execution.models import Trade
from tests.factories import PaperAccountFactory

CLIENTS = 20


def _fire(account, token_key: str, body: dict, clients: int = CLIENTS) -> list:
    barrier = threading.Barrier(clients)

    def post(_: int):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token_key}")
            barrier.wait(timeout=30)
            return client.post("/api/decisions/", body, format="json")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(post, range(clients)))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_one_key_sent_by_20_clients_at_once_is_one_decision_for_all(round_):
    account = PaperAccountFactory()
    token = Token.objects.create(user=account.owner)
    body = {"account": account.pk, "symbol": "BTCUSDT", "action": "hold", "idempotency_key": f"same-{round_}"}

    responses = _fire(account, token.key, body)

    assert sorted({r.status_code for r in responses}) in ([201], [200, 201]), [
        (r.status_code, r.content) for r in responses
    ]
    assert [r.status_code for r in responses].count(201) == 1
    assert Decision.objects.count() == 1
    assert {r.json()["id"] for r in responses} == {Decision.objects.get().pk}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_opening_key_sent_by_20_clients_at_once_is_one_trade(market):
    account = PaperAccountFactory()
    token = Token.objects.create(user=account.owner)
    body = {
        "account": account.pk,
        "symbol": "BTCUSDT",
        "action": "open_long",
        "quantity": "0.01",
        "leverage": 5,
        "idempotency_key": "open-once",
    }

    responses = _fire(account, token.key, body)

    assert all(r.status_code in (200, 201) for r in responses), [(r.status_code, r.content) for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    assert Decision.objects.count() == 1 and Trade.objects.count() == 1
    assert {r.json()["id"] for r in responses} == {Decision.objects.get().pk}
