"""Issue 17's order-path review: each defect proved by a test that failed before its fix.

1. The per-process set-up cache let two worker processes disagree with the venue about a
   symbol's leverage, so an order went out at another order's leverage.
2. The paper order's one transaction read the open position without a row lock, then wrote it
   back whole at the flush, so a mark-to-market committed in between was silently reverted.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from execution.models import Position
from execution.services import ExecutionService
from execution.services.adapters import paper as paper_module
from execution.services.paper.marking import mark_positions
from tests.factories import PaperAccountFactory

NEW_MARK = Decimal("70000")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_mark_committed_during_a_paper_order_is_not_reverted(market, monkeypatch):
    account = PaperAccountFactory(paper_balance=Decimal("100000"), cooldown_seconds=0)
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    original = paper_module.BookFill.fill
    marked = {}
    threads = []

    def fill_while_the_marker_runs(self, order):
        def marker():
            try:
                marked["rows"] = mark_positions({"BTCUSDT": NEW_MARK}, timezone.now(), paper_only=True)
            finally:
                connection.close()

        thread = threading.Thread(target=marker)
        threads.append(thread)
        thread.start()
        # Without the position's lock the marker commits here; with it, it waits for the order.
        thread.join(timeout=1)
        return original(self, order)

    monkeypatch.setattr(paper_module.BookFill, "fill", fill_while_the_marker_runs)
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    threads[0].join(timeout=10)
    assert marked.get("rows") == 1, "the marker did not run during the order"
    position = Position.objects.get(account=account, status="open")
    assert position.quantity == Decimal("0.02")
    assert position.mark_price == NEW_MARK, f"the committed mark was reverted to {position.mark_price}"
