"""The paper order path through ExecutionService, with market data from a simulated exchange."""

from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.services import set_trading_state
from execution.exceptions import InsufficientLiquidity, RiskCheckFailed
from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services import ExecutionService
from tests.factories import PaperAccountFactory

pytestmark = pytest.mark.django_db
FEE_RATE = Decimal("0.00035")


def row_counts():
    return (
        Trade.objects.count(),
        Position.objects.count(),
        PendingOrder.objects.count(),
        ExecutionEvent.objects.count(),
    )


def test_market_buy_walks_the_book_charges_the_taker_fee_and_opens_a_position(market):
    result = ExecutionService(PaperAccountFactory(paper_balance=Decimal("100000"))).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity=Decimal("0.75"), leverage=5
    )
    # The simulated book: 0.5 at 65000.5, then 0.75 at 65001.5.
    expected_price = (Decimal("0.5") * Decimal("65000.5") + Decimal("0.25") * Decimal("65001.5")) / Decimal("0.75")
    trade, position = result.trade, result.position
    assert trade.status == "filled" and trade.quantity == Decimal("0.75")
    assert trade.price == expected_price.quantize(Decimal("1e-10"))
    assert trade.fee == (Decimal("0.75") * expected_price * FEE_RATE).quantize(Decimal("1e-10"))
    assert trade.realized_pnl == -trade.fee
    assert position.side == "LONG" and position.quantity == Decimal("0.75") and position.leverage == 5
    assert position.margin == (Decimal("0.75") * position.entry_price / 5).quantize(Decimal("1e-10"))
    assert position.liquidation_price < position.entry_price
    assert market.non_market_calls() == []


def test_take_profit_and_stop_loss_become_linked_pending_orders(market, paper_account):
    result = ExecutionService(paper_account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="72000.04", stop_loss="64000"
    )
    tp, sl = sorted(result.pending_orders, key=lambda p: p.kind)[::-1]
    assert (tp.kind, tp.side, tp.trigger_price, tp.working_type) == (
        "take_profit",
        "SELL",
        Decimal("72000"),
        "MARK_PRICE",
    )
    assert (sl.kind, sl.side, sl.trigger_price) == ("stop_loss", "SELL", Decimal("64000"))
    tp.refresh_from_db()
    sl.refresh_from_db()
    assert tp.sibling_id == sl.pk and sl.sibling_id == tp.pk
    assert tp.client_order_id.startswith(result.trade.client_order_id)


def test_short_protection_is_mirrored(market, paper_account):
    result = ExecutionService(paper_account).execute_market_order(
        symbol="ETHUSDT", side="SELL", quantity="1", leverage=3, take_profit="3000", stop_loss="3800"
    )
    assert {p.side for p in result.pending_orders} == {"BUY"}
    assert result.position.side == "SHORT"


def test_add_reduce_and_close_update_the_position_and_realize_pnl(market):
    paper_account = PaperAccountFactory(paper_balance=Decimal("100000"))
    service = ExecutionService(paper_account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.5", leverage=5)
    market.set_price("BTCUSDT", "66000")
    added = service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.5", leverage=5).position
    assert added.quantity == Decimal("1") and Decimal("65000") < added.entry_price < Decimal("66001")
    market.set_price("BTCUSDT", "67000")
    reduced = service.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.25", leverage=5)
    assert reduced.position.quantity == Decimal("0.75")
    assert reduced.trade.realized_pnl > 0
    closed = service.close_position("BTCUSDT")
    assert closed.position.status == "closed" and closed.position.quantity == 0
    assert closed.trade.reason == "exit"
    trades = Trade.objects.filter(account=paper_account)
    total_realized = sum((t.realized_pnl for t in trades), Decimal("0"))
    paper_account.refresh_from_db()
    assert paper_account.paper_realized_pnl == total_realized
    assert closed.position.realized_pnl == total_realized


def test_flip_closes_the_long_and_opens_a_short(market):
    service = ExecutionService(PaperAccountFactory(paper_balance=Decimal("100000")))
    first = service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.5", leverage=5, stop_loss="60000")
    flip = service.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.75", leverage=5)
    old = Position.objects.get(pk=first.position.pk)
    assert old.status == "closed"
    assert flip.position.side == "SHORT" and flip.position.quantity == Decimal("0.25")
    assert PendingOrder.objects.get(position=old).status == "cancelled"  # no stop survives its position


def test_insufficient_margin_is_denied_and_recorded_without_a_trade(market):
    account = PaperAccountFactory(paper_balance=Decimal("100"))
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.1", leverage=5)
    assert caught.value.code == "INSUFFICIENT_MARGIN"
    assert Trade.objects.count() == 0
    event = ExecutionEvent.objects.get(kind="order.denied")
    assert event.data["code"] == "INSUFFICIENT_MARGIN"


def test_margin_in_use_counts_against_the_wallet(market):
    account = PaperAccountFactory(paper_balance=Decimal("1000"))
    service = ExecutionService(account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.07", leverage=5)  # ~910 margin
    with pytest.raises(RiskCheckFailed) as caught:
        service.execute_market_order(symbol="ETHUSDT", side="BUY", quantity="1", leverage=5)  # ~700 more
    assert caught.value.code == "INSUFFICIENT_MARGIN"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"quantity": "0.0004"}, "INVALID_QUANTITY"),  # rounds to zero
        ({"quantity": "0"}, "INVALID_QUANTITY"),
        ({"quantity": "-1"}, "INVALID_QUANTITY"),
        ({"leverage": 26}, "LEVERAGE_TOO_HIGH"),
        ({"symbol": "NOPEUSDT"}, "UNKNOWN_SYMBOL"),
        ({"stop_loss": "70000"}, "INVALID_PROTECTION"),  # a long's stop above the mark
        ({"take_profit": "60000"}, "INVALID_PROTECTION"),  # a long's TP below the mark
        ({"side": "SELL", "stop_loss": "60000"}, "INVALID_PROTECTION"),  # a short's stop below the mark
    ],
)
def test_bad_orders_are_refused_with_a_code_and_write_nothing(market, paper_account, kwargs, code):
    before = row_counts()
    order = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "leverage": 5, **kwargs}
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(paper_account).execute_market_order(**order)
    assert caught.value.code == code
    assert row_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"side": "HOLD"}, "side"),
        ({"side": "buy"}, "side"),
        ({"leverage": 0}, "leverage"),
        ({"leverage": "5"}, "leverage"),
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": 0.01}, "quantity"),
        ({"symbol": "btc"}, "symbol"),
        ({"take_profit": "x"}, "take_profit"),
    ],
)
def test_malformed_arguments_raise_validation_errors_and_write_nothing(market, paper_account, kwargs, field):
    before = row_counts()
    order = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "leverage": 5, **kwargs}
    with pytest.raises(ValidationError) as caught:
        ExecutionService(paper_account).execute_market_order(**order)
    assert field in caught.value.message_dict
    assert row_counts() == before
    assert market.non_market_calls() == []


def test_account_leverage_cap_is_a_recorded_denial(market):
    account = PaperAccountFactory(max_leverage=3)
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "LEVERAGE_TOO_HIGH"
    assert ExecutionEvent.objects.filter(kind="order.denied").count() == 1


def test_min_notional(market, paper_account):
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(paper_account).execute_market_order(symbol="ASTERUSDT", side="BUY", quantity="2", leverage=5)
    assert caught.value.code == "MIN_NOTIONAL"


def test_halted_and_reducing_accounts(market, paper_account):
    service = ExecutionService(paper_account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5)
    set_trading_state(account=paper_account, state="reducing")
    with pytest.raises(RiskCheckFailed) as caught:
        service.execute_market_order(symbol="ETHUSDT", side="BUY", quantity="1", leverage=5)
    assert caught.value.code == "REDUCE_ONLY"
    service.execute_market_order(symbol="BTCUSDT", side="SELL", quantity="0.01", leverage=5)  # reducing is allowed
    set_trading_state(account=paper_account, state="halted")
    with pytest.raises(RiskCheckFailed) as caught:
        service.close_position("BTCUSDT")
    assert caught.value.code == "TRADING_HALTED"


def test_cooldown_counts_from_the_last_entry(market):
    account = PaperAccountFactory(cooldown_seconds=60)
    service = ExecutionService(account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    with pytest.raises(RiskCheckFailed) as caught:
        service.execute_market_order(symbol="ETHUSDT", side="BUY", quantity="1", leverage=5)
    assert caught.value.code == "COOLDOWN_ACTIVE"
    assert "remaining" in caught.value.message
    assert 0 < caught.value.details["remaining_seconds"] <= 60
    service.close_position("BTCUSDT")  # exits are not entries: no cooldown


def test_stale_mark_price_is_denied(market, paper_account):
    market.stale_ms = 120_000
    with pytest.raises(RiskCheckFailed) as caught:
        ExecutionService(paper_account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "STALE_PRICE"


def test_book_too_thin_rejects_the_intent(market):
    market.exchange.symbols["BTCUSDT"].depth_levels = 2  # 0.5 + 0.75 BTC visible
    with pytest.raises(InsufficientLiquidity, match="cannot be filled"):
        ExecutionService(PaperAccountFactory(paper_balance=Decimal("100000"))).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="2", leverage=5
        )
    trade = Trade.objects.get()
    assert trade.status == "rejected" and trade.error_code == "INSUFFICIENT_LIQUIDITY"
    assert not Position.objects.exists()
    # One transaction for a paper order, audited as on a venue: the intent, then its refusal.
    kinds = list(ExecutionEvent.objects.filter(subject_id=trade.pk).order_by("id").values_list("kind", flat=True))
    assert kinds == ["trade.submitting", "trade.rejected"]


def test_same_idempotency_key_returns_the_first_result(market, paper_account):
    service = ExecutionService(paper_account)
    first = service.execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, idempotency_key="d-1"
    )
    again = service.execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, idempotency_key="d-1"
    )
    assert again.replayed and again.trade.pk == first.trade.pk
    assert Trade.objects.count() == 1
    assert len(first.trade.client_order_id) <= 32


def test_paper_orders_never_call_a_trading_endpoint(market, paper_account):
    service = ExecutionService(paper_account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000")
    service.close_position("BTCUSDT")
    assert market.non_market_calls() == []
    assert market.calls_to("/fapi/v1/depth") == 2


def test_order_path_query_count_does_not_grow_with_history(market, paper_account, django_assert_max_num_queries):
    service = ExecutionService(paper_account)
    for _ in range(5):
        service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
        service.close_position("BTCUSDT")
    # A paper order with TP/SL is one transaction (was two, of 13 statements): on PostgreSQL the
    # account lock, the lock of the position it books on and one read (pipelined), then 7 writes
    # sent in one pipeline (the intent with its fill, its event, the position, the wallet, two
    # legs already linked, the events): 10 statements in 2 round trips. SQLite: no lock
    # statements, 9. Plus the SAVEPOINT/RELEASE that the test's transaction adds, plus the cached
    # mark's read when the price cache is the table.
    statements = 10 if connection.vendor == "postgresql" else 9
    with django_assert_max_num_queries(statements + 2 + (0 if settings.REDIS_URL else 1)):
        service.execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
        )


@pytest.mark.postgres
def test_a_paper_order_with_tp_sl_is_one_transaction_of_two_round_trips_on_postgresql(market, paper_account, settings):
    """No network call separates a paper order's steps (its book is read first), so it is one
    transaction: the lock with its read, taking the new rows' keys ahead (one pipeline), then
    every write (the intent and its event, the position, the wallet, the fill, the legs, the
    events) in one pipeline. The COMMIT (and this test's SAVEPOINT) are not counted; the cached
    mark's read is (the table backend; with Redis it is no database statement)."""
    import contextlib
    from unittest import mock

    import psycopg
    from django.test.utils import CaptureQueriesContext

    service = ExecutionService(paper_account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    service.close_position("BTCUSDT")
    pipelines: list[int] = []
    original = psycopg.Connection.pipeline

    @contextlib.contextmanager
    def counted(self):
        before = len(connection.queries_log)
        with original(self) as pipeline:
            yield pipeline
        pipelines.append(len(connection.queries_log) - before)

    with mock.patch.object(psycopg.Connection, "pipeline", counted), CaptureQueriesContext(connection) as captured:
        result = service.execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
        )
    assert len(result.pending_orders) == 2 and result.pending_orders[0].sibling == result.pending_orders[1]
    statements = [
        q["sql"]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))
    ]
    round_trips = len(statements) - sum(size - 1 for size in pipelines if size)
    # The account's and the position's locks and the read; the writes (the intent's INSERT
    # carries its fill: the transition to filled is merged into it).
    assert pipelines == [3, 7]
    assert round_trips == 2 + (0 if settings.REDIS_URL else 1)
    events = list(ExecutionEvent.objects.filter(subject_type="trade", subject_id=result.trade.pk).order_by("id"))
    assert [e.kind for e in events] == ["trade.submitting", "trade.filled"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_paper_order_holds_the_account_lock_through_its_fill(market):
    """Reserve, fill and apply are one transaction: a sweep (or anything that locks the account)
    cannot slip in between the fill and its booking, so a close always finds its position."""
    import threading

    import psycopg
    from django.db import connections

    from execution.services.adapters.paper import BookFill

    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    service = ExecutionService(account)
    service.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    original = BookFill.fill
    seen: list[str] = []
    url = connections["default"].settings_dict

    def try_the_lock() -> None:
        params = {"dbname": url["NAME"], "user": url["USER"], "host": url["HOST"] or "127.0.0.1", "port": url["PORT"]}
        with psycopg.connect(**{k: v for k, v in params.items() if v}) as other:
            try:
                other.execute("SELECT 1 FROM accounts_account WHERE id = %s FOR UPDATE NOWAIT", [account.pk])
                seen.append("free")
            except psycopg.errors.LockNotAvailable:
                seen.append("held")

    def fill_while_another_writer_tries(self, order):
        thread = threading.Thread(target=try_the_lock)
        thread.start()
        thread.join()
        return original(self, order)

    with mock.patch.object(BookFill, "fill", fill_while_another_writer_tries):
        result = service.close_position("BTCUSDT")
    assert seen == ["held"]
    assert result.trade.status == "filled" and result.position.status == "closed"
