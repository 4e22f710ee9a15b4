"""Position and margin modes (issue 13 item 1): the service trades one-way, and knows it does.

A hedge-mode account that cannot switch (-4067 open orders, -4068 positions) is refused with the
policy denial POSITION_MODE before the reserve step: one audited `order.denied` event, no intent,
nothing sent to the order endpoint. The refusal is cached briefly, so a fixed account trades again.
"""

from decimal import Decimal

import pytest
import responses

from execution.exceptions import PolicyDenied
from execution.models import ExecutionEvent, Trade
from execution.services import ExecutionService
from execution.services.setup_cache import SETUP
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory
from tests.market import BASE
from tests.test_live_execution import FakeLiveVenue, no_sleep

pytestmark = pytest.mark.django_db


@pytest.fixture
def venue():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeLiveVenue(rsps)


def in_hedge_mode(venue, prefix="/fapi/v1", *, switch_code=-4068):
    venue.rsps.replace(responses.GET, f"{BASE}{prefix}/positionSide/dual", json={"dualSidePosition": True})
    msg = {-4067: "open orders", -4068: "position"}[switch_code]
    venue.rsps.replace(
        responses.POST,
        f"{BASE}{prefix}/positionSide/dual",
        status=400,
        json={"code": switch_code, "msg": f"Position side cannot be changed if there exists {msg}."},
    )


def buy(account):
    return ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )


@pytest.mark.parametrize("switch_code", [-4067, -4068])
def test_hedge_mode_that_cannot_switch_is_refused_with_position_mode_and_sends_no_order(venue, switch_code):
    in_hedge_mode(venue, switch_code=switch_code)
    account = LiveV1AccountFactory()
    with pytest.raises(PolicyDenied) as caught:
        buy(account)
    assert caught.value.code == "POSITION_MODE" and "hedge mode" in caught.value.message
    assert venue.order_posts() == []  # nothing reached the order endpoint
    assert ("POST", "/fapi/v1/positionSide/dual") in venue.calls()  # it did try to switch
    assert not Trade.objects.exists()  # refused before the reserve step wrote an intent
    (event,) = ExecutionEvent.objects.filter(kind="order.denied")
    assert event.data["code"] == "POSITION_MODE" and event.data["exchange_code"] == switch_code
    assert event.data["mode"] == "hedge"


def test_hedge_mode_is_refused_on_v3_paths_too():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        v3 = FakeLiveVenue(rsps, prefix="/fapi/v3", risk_prefix="/fapi/v3")
        in_hedge_mode(v3, "/fapi/v3")
        with pytest.raises(PolicyDenied, match="hedge mode"):
            buy(LiveV3AccountFactory())
        assert v3.order_posts() == [] and ("GET", "/fapi/v3/positionSide/dual") in v3.calls()


def test_a_closing_order_is_refused_too(venue):
    account = LiveV1AccountFactory()
    buy(account)
    in_hedge_mode(venue)  # switched by hand on the exchange afterwards
    SETUP.delete(f"live:setup:{account.pk}:modes:{account.margin_type}")  # an hour later
    with pytest.raises(PolicyDenied, match="hedge mode"):
        ExecutionService(account, sleep=no_sleep).close_position("BTCUSDT")
    assert len(venue.order_posts()) == 1  # only the first entry


def test_hedge_mode_that_can_switch_is_switched_and_trades(venue):
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v1/positionSide/dual", json={"dualSidePosition": True})
    result = buy(LiveV1AccountFactory())
    assert result.trade.status == "filled"
    sent = [c for c in venue.rsps.calls if c.request.method == "POST" and "positionSide/dual" in c.request.url]
    assert len(sent) == 1 and "dualSidePosition=false" in sent[0].request.body


def test_the_refusal_is_cached_briefly_and_a_fixed_account_trades_again(venue):
    in_hedge_mode(venue)
    account = LiveV1AccountFactory()
    for _ in range(2):
        with pytest.raises(PolicyDenied):
            buy(account)
    assert venue.calls().count(("GET", "/fapi/v1/positionSide/dual")) == 1  # the second was refused from the cache
    # The owner closes the position and switches by hand; once the short cache lapses it trades.
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v1/positionSide/dual", json={"dualSidePosition": False})
    SETUP.delete(f"live:setup:{account.pk}:modes:{account.margin_type}")  # MODE_RETRY_SECONDS later
    assert buy(account).trade.status == "filled"


def test_multi_assets_mode_against_isolated_margin_is_switched_to_single_asset(venue):
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v1/multiAssetsMargin", json={"multiAssetsMargin": True})
    venue.rsps.add(responses.POST, f"{BASE}/fapi/v1/multiAssetsMargin", json={"code": 200, "msg": "success"})
    assert buy(LiveV1AccountFactory(margin_type="ISOLATED")).trade.status == "filled"
    assert ("POST", "/fapi/v1/multiAssetsMargin") in venue.calls()


def test_multi_assets_mode_that_will_not_switch_is_refused_with_the_exchange_code_and_msg(venue):
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v1/multiAssetsMargin", json={"multiAssetsMargin": True})
    venue.rsps.add(
        responses.POST,
        f"{BASE}/fapi/v1/multiAssetsMargin",
        status=400,
        json={"code": -4171, "msg": "Adjusting Multi-Assets mode is not allowed while a position exists."},
    )
    with pytest.raises(PolicyDenied) as caught:
        buy(LiveV1AccountFactory(margin_type="ISOLATED"))
    assert caught.value.code == "POSITION_MODE" and "-4171" in caught.value.message
    assert caught.value.details["exchange_msg"].startswith("Adjusting Multi-Assets")
    assert venue.order_posts() == [] and not Trade.objects.exists()


def test_multi_assets_mode_is_not_read_for_cross_margin(venue):
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v1/multiAssetsMargin", json={"multiAssetsMargin": True})
    assert buy(LiveV1AccountFactory(margin_type="CROSSED")).trade.status == "filled"
    assert ("GET", "/fapi/v1/multiAssetsMargin") not in venue.calls()


# ---------------------------------------------------------------- against the simulator


def test_simulator_hedge_account_with_an_open_order_is_refused_and_gets_no_order(sim, db):
    remote = sim.exchange.accounts["demo-v1"]
    remote.hedge_mode = True
    sim.exchange.place_order(
        remote,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "positionSide": "LONG",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01",
            "price": "50000",
        },
    )
    sim.server.request_log.clear()
    with pytest.raises(PolicyDenied) as caught:
        buy(LiveV1AccountFactory())
    assert caught.value.code == "POSITION_MODE" and caught.value.details["exchange_code"] == -4067
    requested = list(sim.server.request_log)
    assert ("POST", "/fapi/v1/positionSide/dual") in requested
    assert all(path != "/fapi/v1/order" for _, path in requested)
    assert remote.hedge_mode and len(remote.orders) == 1 and not Trade.objects.exists()
    assert not any(p.amount for p in remote.positions.values())


def test_simulator_hedge_account_without_orders_or_positions_is_switched(sim, db):
    remote = sim.exchange.accounts["demo-v3"]
    remote.hedge_mode = True
    assert buy(LiveV3AccountFactory()).trade.status == "filled"
    assert remote.hedge_mode is False and remote.positions["BTCUSDT"].amount == Decimal("0.01")
