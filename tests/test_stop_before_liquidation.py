"""A stop-loss at or beyond the liquidation price (of the position after the order) is refused:
it would never fire, the position would be liquidated first (issue 13, item 2)."""

from decimal import Decimal

import pytest

from execution.exceptions import RiskCheckFailed
from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services import ExecutionService
from execution.services.risk import refuse_stop_beyond_liquidation
from tests.factories import PaperAccountFactory
from tests.test_live_execution import FakeLiveVenue, service

pytestmark = pytest.mark.django_db


def counts():
    return Trade.objects.count(), Position.objects.count(), PendingOrder.objects.count(), ExecutionEvent.objects.count()


def test_paper_25x_long_with_its_stop_below_liquidation_is_refused_and_writes_nothing(market):
    # The report: a 25x long at ~65,000 with SL 60,000 (liquidation ~62,650) was accepted, then liquidated.
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    before = counts()
    with pytest.raises(RiskCheckFailed) as refused:
        ExecutionService(account).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=25, stop_loss="60000"
        )
    assert refused.value.code == "INVALID_PROTECTION"
    assert "liquidation price 62" in refused.value.message
    assert counts() == before


def test_paper_short_mirrored_and_a_stop_inside_liquidation_is_accepted(market):
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    with pytest.raises(RiskCheckFailed, match="liquidation price 67"):
        ExecutionService(account).execute_market_order(
            symbol="BTCUSDT", side="SELL", quantity="0.01", leverage=25, stop_loss="70000"
        )
    result = ExecutionService(account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=25, stop_loss="63500"
    )
    assert result.position.liquidation_price < Decimal("63500")


def test_adding_to_a_position_checks_the_liquidation_price_after_the_order(market):
    account = PaperAccountFactory(paper_balance=Decimal("100000"))
    ExecutionService(account).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=2)
    # At 2x the stop at 62,000 is fine; the add at 25x moves the whole position's liquidation above it.
    with pytest.raises(RiskCheckFailed, match="liquidation price 62"):
        ExecutionService(account).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.001", leverage=25, stop_loss="62000"
        )
    result = ExecutionService(account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.001", leverage=2, stop_loss="62000"
    )
    assert result.position.liquidation_price < Decimal("62000")


def test_live_stop_beyond_liquidation_is_refused_before_anything_is_sent():
    import responses

    from tests.factories import LiveV1AccountFactory

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        venue = FakeLiveVenue(rsps)
        account = LiveV1AccountFactory()
        with pytest.raises(RiskCheckFailed) as refused:
            service(account).execute_market_order(
                symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=25, stop_loss="60000"
            )
        assert refused.value.code == "INVALID_PROTECTION"
        assert venue.order_posts() == []
    assert Trade.objects.count() == 0


@pytest.mark.parametrize(
    ("side", "stop", "refused"),
    [
        ("LONG", "100", True),
        ("LONG", "99.99", True),
        ("LONG", "100.01", False),
        ("SHORT", "100", True),
        ("SHORT", "100.01", True),
        ("SHORT", "99.99", False),
    ],
)
def test_the_rule_at_its_edges(side, stop, refused):
    if refused:
        with pytest.raises(RiskCheckFailed, match=r"liquidation price 100\.00"):
            refuse_stop_beyond_liquidation(side=side, stop_loss=Decimal(stop), liquidation_price=Decimal("100"))
    else:
        refuse_stop_beyond_liquidation(side=side, stop_loss=Decimal(stop), liquidation_price=Decimal("100"))


@pytest.mark.parametrize(("side", "liquidation", "expected"), [("LONG", "63000", "64000"), ("SHORT", "67000", "66000")])
def test_an_adopted_position_gets_its_stop_inside_liquidation(market, side, liquidation, expected):
    from execution.services.reconciliation.protection_repair import protection_for

    # 5 % from the mark (61,750 / 68,250) would sit past liquidation: halfway to it instead.
    position = Position(symbol="BTCUSDT", side=side, liquidation_price=Decimal(liquidation))
    spec = protection_for(position, Decimal("65000"))
    assert spec.stop_loss == Decimal(expected)
    far = Position(symbol="BTCUSDT", side=side, liquidation_price=None)
    assert protection_for(far, Decimal("65000")).stop_loss == Decimal("61750" if side == "LONG" else "68250")
