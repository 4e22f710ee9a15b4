"""The one-statement bulk writes give the same rows as Django's bulk_create / bulk_update."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from execution.models import Position, Trade
from execution.services.bulk_sql import bulk_insert_rows, bulk_update_rows
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db


def test_bulk_insert_assigns_keys_and_writes_every_field(paper_account):
    now = timezone.now()
    trades = [
        Trade(
            account=paper_account,
            symbol="BTCUSDT",
            side="SELL",
            requested_quantity=Decimal("0.5"),
            quantity=Decimal("0.5"),
            price=Decimal("65000.1234567891"),
            fee=Decimal("0.0000000001"),
            client_order_id=f"bulk-{i}",
            status="filled",
            filled_at=now,
            leverage=None,
        )
        for i in range(3)
    ]
    created = bulk_insert_rows(Trade, trades)
    assert all(t.pk for t in created)
    stored = Trade.objects.get(pk=created[1].pk)
    assert (stored.client_order_id, stored.price, stored.fee, stored.leverage) == (
        "bulk-1",
        Decimal("65000.1234567891"),
        Decimal("0.0000000001"),
        None,
    )
    assert stored.created_at is not None and stored.filled_at == now


def test_bulk_update_writes_decimals_nulls_and_datetimes():
    account = PaperAccountFactory()
    rows = [
        Position.objects.create(
            account=account, symbol=s, side="LONG", quantity=Decimal("1"), entry_price=Decimal("10"), leverage=2
        )
        for s in ("BTCUSDT", "ETHUSDT")
    ]
    now = timezone.now()
    rows[0].quantity, rows[0].liquidation_price, rows[0].closed_at = Decimal("0.25"), None, None
    rows[1].quantity, rows[1].liquidation_price, rows[1].status, rows[1].closed_at = (
        Decimal("0"),
        Decimal("5.5"),
        "closed",
        now,
    )
    assert bulk_update_rows(Position, rows, ["quantity", "liquidation_price", "status", "closed_at"]) == 2
    first, second = (Position.objects.get(pk=r.pk) for r in rows)
    assert (first.quantity, first.liquidation_price, first.status) == (Decimal("0.25"), None, "open")
    assert (second.quantity, second.liquidation_price, second.status, second.closed_at) == (
        Decimal("0"),
        Decimal("5.5"),
        "closed",
        now,
    )


def test_bulk_writes_give_auto_now_fields_what_a_save_gives(paper_account):
    """The fast path reads plain values straight from the objects: an INSERT still stamps
    created_at and updated_at now, an UPDATE writes the updated_at the writer set."""
    before = timezone.now()
    trade = Trade(
        account=paper_account,
        symbol="BTCUSDT",
        side="SELL",
        requested_quantity=Decimal("1"),
        quantity=Decimal("1"),
        price=Decimal("1"),
        client_order_id="bulk-auto",
        status="filled",
    )
    (created,) = bulk_insert_rows(Trade, [trade])
    stored = Trade.objects.get(pk=created.pk)
    assert before <= stored.created_at <= timezone.now() and stored.created_at == created.created_at
    position = Position.objects.create(
        account=paper_account,
        symbol="ETHUSDT",
        side="LONG",
        quantity=Decimal("1"),
        entry_price=Decimal("10"),
        leverage=2,
    )
    position.updated_at = later = timezone.now() + timedelta(hours=1)
    bulk_update_rows(Position, [position], ["updated_at"])
    assert Position.objects.get(pk=position.pk).updated_at == later
