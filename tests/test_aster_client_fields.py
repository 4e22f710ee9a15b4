"""The client reads what matters (issue 13 item 4): position side, notional, isolated wallet,
an order's original type, price, time in force and time; position mode and multi-assets mode."""

from decimal import Decimal

import pytest
import responses

from execution.aster.errors import AsterInvalidRequest, AsterResponseError
from tests import aster_payloads as P
from tests.test_aster_client import BASE, fake_time, mocked, sent_params, v1, v3  # noqa: F401

HEDGE_ROWS = [
    {
        **P.POSITION_RISK[0],
        "marginType": "isolated",
        "positionSide": "LONG",
        "positionAmt": "0.020",
        "isolatedMargin": "131.2",
        "isolatedWallet": "130.0",
        "notional": "1302.0",
    },
    {**P.POSITION_RISK[0], "positionSide": "SHORT", "positionAmt": "-0.010", "notional": "-651.0"},
]


def test_position_rows_keep_side_notional_and_isolated_wallet_apart(v1, mocked):
    mocked.get(f"{BASE}/fapi/v2/positionRisk", json=HEDGE_ROWS)
    long, short = v1.position_risk()
    assert (long.position_side, long.notional, long.isolated_margin, long.isolated_wallet) == (
        "LONG",
        Decimal("1302.0"),
        Decimal("131.2"),
        Decimal("130.0"),
    )
    assert (short.position_side, short.position_amt, short.notional) == ("SHORT", Decimal("-0.010"), Decimal("-651.0"))


def test_isolated_wallet_is_not_read_as_isolated_margin(v1, mocked):
    row = {k: v for k, v in HEDGE_ROWS[0].items() if k != "isolatedMargin"}
    mocked.get(f"{BASE}/fapi/v2/positionRisk", json=[row])
    (position,) = v1.position_risk()
    assert position.isolated_margin is None and position.isolated_wallet == Decimal("130.0")


def test_a_triggered_stop_reads_its_original_type_and_order_fields(v1, mocked):
    triggered = {**P.ORDER_STOP_NEW, "type": "MARKET", "origType": "STOP_MARKET", "status": "FILLED"}
    triggered |= {"price": "0", "timeInForce": "GTE_GTC", "positionSide": "BOTH", "time": 1566818724700}
    mocked.get(f"{BASE}/fapi/v1/order", json=triggered)
    order = v1.query_order("BTCUSDT", client_order_id="sl-1")
    assert (order.type, order.current_type, order.time_in_force, order.time_ms) == (
        "STOP_MARKET",
        "MARKET",
        "GTE_GTC",
        1566818724700,
    )


def test_a_limit_order_reads_price_and_time_in_force(v1, mocked):
    limit = {**P.ORDER_FILLED, "type": "LIMIT", "origType": "LIMIT", "price": "64000.1", "timeInForce": "GTX"}
    mocked.get(f"{BASE}/fapi/v1/order", json={**limit, "positionSide": "LONG"})
    order = v1.query_order("BTCUSDT", client_order_id="entry-1")
    assert (order.type, order.price, order.time_in_force, order.position_side) == (
        "LIMIT",
        Decimal("64000.1"),
        "GTX",
        "LONG",
    )


def test_an_order_without_orig_type_falls_back_to_type(v1, mocked):
    mocked.get(f"{BASE}/fapi/v1/order", json={k: v for k, v in P.ORDER_FILLED.items() if k != "origType"})
    assert v1.query_order("BTCUSDT", client_order_id="entry-1").type == "MARKET"


@pytest.mark.parametrize(("client", "prefix"), [("v1", "/fapi/v1"), ("v3", "/fapi/v3")])
def test_position_mode_and_multi_assets_mode_are_read_on_both_generations(request, mocked, client, prefix):
    api = request.getfixturevalue(client)
    mocked.get(f"{BASE}{prefix}/positionSide/dual", json={"dualSidePosition": True})
    mocked.get(f"{BASE}{prefix}/multiAssetsMargin", json={"multiAssetsMargin": False})
    assert api.position_mode_is_hedge() is True
    assert api.multi_assets_mode() is False
    assert "signature" in dict(sent_params(mocked.calls[-1]))


def test_a_mode_reply_without_a_boolean_is_a_response_error(v1, mocked):
    mocked.get(f"{BASE}/fapi/v1/positionSide/dual", json={"dualSidePosition": "maybe"})
    with pytest.raises(AsterResponseError):
        v1.position_mode_is_hedge()


def test_switching_multi_assets_off_sends_false_and_surfaces_the_exchange_error(v1, mocked):
    mocked.post(f"{BASE}/fapi/v1/multiAssetsMargin", json={"code": 200, "msg": "success"})
    v1.set_multi_assets_mode(enabled=False)
    assert dict(sent_params(mocked.calls[-1]))["multiAssetsMargin"] == "false"
    mocked.replace(
        responses.POST,
        f"{BASE}/fapi/v1/multiAssetsMargin",
        status=400,
        json={"code": -4171, "msg": "Multi-Assets mode cannot be changed while positions exist."},
    )
    with pytest.raises(AsterInvalidRequest) as caught:
        v1.set_multi_assets_mode(enabled=False)
    assert caught.value.code == -4171 and "positions exist" in str(caught.value)
