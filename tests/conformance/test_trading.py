"""Trading endpoints (ASTER_API.md §3): new / query / cancel orders, batches, cancel-all, the
dead-man switch, open and all orders, on V1 and V3 paths; documented shapes and error codes."""

import json
import time

import pytest

from tests.conformance.conftest import assert_shape

pytestmark = pytest.mark.usefixtures("flat")

ORDER_STRINGS = ("clientOrderId", "side", "positionSide", "status", "symbol", "timeInForce", "type", "origType")
ORDER_DECIMALS = ("cumQuote", "executedQty", "avgPrice", "origQty", "price", "stopPrice")
ORDER_BOOLS = ("reduceOnly", "closePosition", "priceProtect")


def assert_order(body, *, query: bool = False):
    """§3 "Order response / query response fields"; query and cancel replies add `time`."""
    assert_shape(
        body,
        strings=(*ORDER_STRINGS, "workingType"),
        decimals=ORDER_DECIMALS,
        ints=("orderId", "updateTime", *(("time",) if query else ())),
        bools=ORDER_BOOLS,
    )


def buy(venue, version, quantity="0.01", **extra):
    return venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity=quantity, **extra
    )


def rest(venue, version, client_id, price="60000", side="BUY", **extra):
    params = {"timeInForce": "GTC", "quantity": "0.01", "price": price, **extra}
    return venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side=side, type="LIMIT", newClientOrderId=client_id, **params
    )


def test_market_order_with_result(venue, version):
    reply = buy(venue, version, newOrderRespType="RESULT", newClientOrderId=f"m-{version}")
    assert reply.status == 200
    assert_order(reply.body)
    assert (reply.body["status"], reply.body["type"], reply.body["clientOrderId"]) == (
        "FILLED",
        "MARKET",
        f"m-{version}",
    )
    assert reply.body["positionSide"] == "BOTH"  # §3: one-way mode defaults to BOTH
    assert float(reply.body["executedQty"]) == 0.01 and float(reply.body["avgPrice"]) > 0


def test_query_open_order_and_cancel(venue, version):
    placed = rest(venue, version, f"r-{version}").body
    assert placed["status"] == "NEW" and placed["timeInForce"] == "GTC" and placed["price"] == "60000"
    for path in ("order", "openOrder"):
        found = venue.signed(version, "GET", path, symbol="BTCUSDT", origClientOrderId=f"r-{version}")
        assert found.status == 200
        assert_order(found.body, query=True)
    by_id = venue.signed(version, "GET", "order", symbol="BTCUSDT", orderId=placed["orderId"]).body
    assert by_id["clientOrderId"] == f"r-{version}"
    open_orders = venue.signed(version, "GET", "openOrders", symbol="BTCUSDT").body
    assert [o["clientOrderId"] for o in open_orders] == [f"r-{version}"]
    cancelled = venue.signed(version, "DELETE", "order", symbol="BTCUSDT", origClientOrderId=f"r-{version}")
    assert cancelled.body["status"] == "CANCELED"
    assert_order(cancelled.body, query=True)
    # §3: openOrder on a filled or cancelled order is -2013; the order itself is still found.
    assert venue.signed(version, "GET", "openOrder", symbol="BTCUSDT", origClientOrderId=f"r-{version}").code == -2013
    assert venue.signed(version, "GET", "order", symbol="BTCUSDT", origClientOrderId=f"r-{version}").status == 200


def test_unknown_orders(venue, version):
    assert venue.signed(version, "GET", "order", symbol="BTCUSDT", origClientOrderId="nope").code == -2013
    assert venue.signed(version, "DELETE", "order", symbol="BTCUSDT", origClientOrderId="nope").code == -2011


def test_cancel_all_open_orders_answers_code_200_as_a_string(venue, version):
    rest(venue, version, f"a1-{version}")
    rest(venue, version, f"a2-{version}", price="59000")
    reply = venue.signed(version, "DELETE", "allOpenOrders", symbol="BTCUSDT")
    assert reply.status == 200 and reply.body["code"] == "200" and isinstance(reply.body["msg"], str)  # §1
    assert venue.signed(version, "GET", "openOrders", symbol="BTCUSDT").body == []


def test_batch_new_orders_answer_in_input_order_with_failures_inline(venue, version):
    batch = [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "60000", "newClientOrderId": f"b1-{version}"},
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01", "reduceOnly": "true"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "59000", "newClientOrderId": f"b3-{version}"},
    ]  # fmt: skip
    reply = venue.signed(version, "POST", "batchOrders", batchOrders=json.dumps(batch, separators=(",", ":")))
    assert reply.status == 200 and len(reply.body) == 3
    first, refused, third = reply.body
    assert first["clientOrderId"] == f"b1-{version}" and third["clientOrderId"] == f"b3-{version}"
    assert refused["code"] == -2022 and isinstance(refused["msg"], str)  # flat: reduce-only is rejected


def test_batch_new_orders_take_at_most_five(venue, version):
    item = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "60000",
    }
    reply = venue.signed(version, "POST", "batchOrders", batchOrders=json.dumps([item] * 6))
    assert reply.status == 400 and isinstance(reply.code, int)


def test_batch_cancel_by_ids_and_by_client_ids(venue, version):
    one = rest(venue, version, f"c1-{version}").body
    rest(venue, version, f"c2-{version}", price="59000")
    by_ids = venue.signed(version, "DELETE", "batchOrders", symbol="BTCUSDT", orderIdList=f"[{one['orderId']},1]")
    cancelled, unknown = by_ids.body
    assert cancelled["status"] == "CANCELED" and unknown["code"] == -2011  # §8: "Unknown order sent." in batches
    by_client = venue.signed(
        version, "DELETE", "batchOrders", symbol="BTCUSDT", origClientOrderIdList=f'["c2-{version}"]'
    )
    assert [o["status"] for o in by_client.body] == ["CANCELED"]


def test_all_orders(venue, version):
    rest(venue, version, f"h-{version}")
    venue.signed(version, "DELETE", "allOpenOrders", symbol="BTCUSDT")
    rows = venue.signed(version, "GET", "allOrders", symbol="BTCUSDT", limit=1000).body
    assert any(r["clientOrderId"] == f"h-{version}" and r["status"] == "CANCELED" for r in rows)
    for row in rows:
        assert_order(row, query=True)
    ids = [r["orderId"] for r in rows]
    assert ids == sorted(ids)
    assert venue.signed(version, "GET", "allOrders").code == -1102  # symbol is mandatory


def test_countdown_cancel_all(venue, version, simulator):
    rest(venue, version, f"d-{version}")
    reply = venue.signed(version, "POST", "countdownCancelAll", symbol="BTCUSDT", countdownTime=1)
    assert reply.status == 200 and reply.body["symbol"] == "BTCUSDT"
    time.sleep(0.01)  # the 1 ms runs out; the next request finds the orders cancelled
    assert venue.signed(version, "GET", "openOrders", symbol="BTCUSDT").body == []
    off = venue.signed(version, "POST", "countdownCancelAll", symbol="BTCUSDT", countdownTime=0)  # 0 disables
    assert off.status == 200


# ---------------------------------------------------------------- trigger orders


def test_stop_market_close_position_rests_and_reports_its_type(venue, version):
    buy(venue, version)
    stop = venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="60000",
        closePosition="true", workingType="MARK_PRICE", newClientOrderId=f"sl-{version}",
    ).body  # fmt: skip
    assert (stop["type"], stop["origType"], stop["closePosition"], stop["workingType"]) == (
        "STOP_MARKET", "STOP_MARKET", True, "MARK_PRICE",
    )  # fmt: skip


@pytest.mark.assumption
def test_a_triggered_stop_market_keeps_its_original_type(venue, version, simulator):
    """ASSUMPTION (ASTER_WS.md §2.3, Binance design): once fired, `type` is MARKET and `origType` STOP_MARKET."""
    from decimal import Decimal

    buy(venue, version)
    venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="64000",
        closePosition="true", newClientOrderId=f"t-{version}",
    )  # fmt: skip
    simulator.exchange.set_price("BTCUSDT", Decimal("63900"))
    fired = venue.signed(version, "GET", "order", symbol="BTCUSDT", origClientOrderId=f"t-{version}").body
    assert (fired["status"], fired["type"], fired["origType"]) == ("FILLED", "MARKET", "STOP_MARKET")


def test_stop_and_take_profit_limit_orders_need_price_and_stop_price(venue, version):
    base = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "timeInForce": "GTC"}
    assert venue.signed(version, "POST", "order", type="STOP", stopPrice="70000", **base).code == -1102  # no price
    assert venue.signed(version, "POST", "order", type="TAKE_PROFIT", price="60000", **base).code == -1102
    stop = venue.signed(version, "POST", "order", type="STOP", price="70100", stopPrice="70000", **base).body
    take = venue.signed(version, "POST", "order", type="TAKE_PROFIT", price="60000", stopPrice="60000", **base).body
    assert (stop["type"], stop["status"], take["type"], take["status"]) == ("STOP", "NEW", "TAKE_PROFIT", "NEW")


def test_a_limit_order_rests_then_fills_when_the_price_crosses(venue, version, simulator):
    from decimal import Decimal

    rest(venue, version, f"x-{version}", price="64000")
    simulator.exchange.set_price("BTCUSDT", Decimal("63990"))
    filled = venue.signed(version, "GET", "order", symbol="BTCUSDT", origClientOrderId=f"x-{version}").body
    assert filled["status"] == "FILLED" and float(filled["avgPrice"]) == 64000


# ---------------------------------------------------------------- documented bad inputs


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"type": "MARKET"}, -1102),  # quantity missing
        ({"type": "LIMIT", "quantity": "0.01", "price": "60000"}, -1102),  # timeInForce missing (§3: required)
        ({"type": "MARKET", "quantity": "0.0001"}, -1111),  # more decimals than the step allows
        ({"type": "MARKET", "quantity": "0"}, -4003),
        ({"type": "MARKET", "quantity": "5000"}, -4005),  # above MARKET_LOT_SIZE maxQty
        ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "60000.05"}, -1111),  # tick 0.1
        ({"type": "MARKET", "quantity": "1", "symbol": "ASTERUSDT"}, -4164),  # 1.2 USDT < MIN_NOTIONAL
        (
            {"type": "STOP_MARKET", "stopPrice": "64000", "quantity": "0.01"},
            -2021,
        ),  # a BUY stop below the price fires at once
        ({"type": "STOP_MARKET", "stopPrice": "70000", "closePosition": "true", "quantity": "0.01"}, -4137),
        ({"type": "MARKET", "quantity": "0.01", "newClientOrderId": "bad id!"}, -4015),
        ({"type": "NOPE", "quantity": "0.01"}, -1116),
        ({"type": "MARKET", "quantity": "0.01", "reduceOnly": "true"}, -2022),  # nothing to reduce
        ({"type": "MARKET", "quantity": "0.01", "positionSide": "LONG"}, -4061),  # one-way mode
        ({"type": "MARKET", "quantity": "0.01", "symbol": "NOPEUSDT"}, -1121),
    ],
)
def test_documented_order_errors(venue, version, params, code):
    params = {"symbol": "BTCUSDT", **params}
    reply = venue.signed(version, "POST", "order", side="BUY", **params)
    assert reply.status == 400 and isinstance(reply.body["msg"], str)
    assert reply.code == code, reply.body


@pytest.mark.assumption
@pytest.mark.parametrize("value", ["True", "TRUE", "1", "yes"])
def test_booleans_are_true_or_false_only(venue, version, value):
    """ASSUMPTION: `reduceOnly` is the STRING "true"/"false" (§3); anything else is -1130 (Binance's
    code for an invalid parameter value; the Aster docs give no code for it)."""
    reply = buy(venue, version, reduceOnly=value)
    assert reply.status == 400 and reply.code == -1130
