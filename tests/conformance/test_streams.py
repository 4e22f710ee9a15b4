"""WebSocket streams (ASTER_WS.md §1, §2): the market streams the service reads (markPrice,
bookTicker, aggTrade), control messages, and the user data stream's events."""

import json
import time
from decimal import Decimal

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conformance.conftest import V1_KEY, assert_shape, is_int


def frames(ws: ClientConnection, *, until, timeout: float = 3.0) -> dict:
    """The first frame that satisfies `until` (scheduled pushes may come first)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if until(frame):
            return frame


def assert_mark(payload: dict) -> None:
    assert_shape(payload, strings=("e", "s"), decimals=("p", "i", "P", "r"), ints=("E", "T"))
    assert payload["e"] == "markPriceUpdate" and payload["s"] == payload["s"].upper()


@pytest.mark.usefixtures("flat")
def test_raw_mark_price_stream(simulator):
    with connect(f"{simulator.ws_url}/ws/btcusdt@markPrice@1s") as ws:
        simulator.exchange.set_price("BTCUSDT", Decimal("64500"))
        payload = frames(ws, until=lambda f: f.get("p") == "64500")
        assert_mark(payload)
        assert payload["s"] == "BTCUSDT"


@pytest.mark.usefixtures("flat")
def test_combined_stream_wraps_each_payload(simulator):
    with connect(f"{simulator.ws_url}/stream?streams=ethusdt@bookTicker/btcusdt@aggTrade") as ws:
        simulator.exchange.set_price("ETHUSDT", Decimal("3510"))
        simulator.exchange.set_price("BTCUSDT", Decimal("64900"))
        book = frames(ws, until=lambda f: f.get("stream") == "ethusdt@bookTicker")
        assert set(book) == {"stream", "data"}
        assert_shape(book["data"], strings=("e", "s"), decimals=("b", "B", "a", "A"), ints=("u", "E", "T"))
        assert book["data"]["e"] == "bookTicker" and float(book["data"]["b"]) < float(book["data"]["a"])
        trade = frames(ws, until=lambda f: f.get("stream") == "btcusdt@aggTrade")["data"]
        assert_shape(trade, strings=("e", "s"), decimals=("p", "q"), ints=("E", "a", "f", "l", "T"), bools=("m",))


def test_control_messages(simulator):
    with connect(f"{simulator.ws_url}/ws/btcusdt@bookTicker") as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1}))
        assert frames(ws, until=lambda f: "id" in f) == {"result": None, "id": 1}
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        listed = frames(ws, until=lambda f: f.get("id") == 3)
        assert set(listed["result"]) == {"btcusdt@bookTicker", "ethusdt@bookTicker"}
        ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 312}))
        assert frames(ws, until=lambda f: f.get("id") == 312) == {"result": None, "id": 312}
        ws.send("{not json")
        assert frames(ws, until=lambda f: "code" in f)["code"] == 3  # §1.3: invalid JSON


# ---------------------------------------------------------------- user data stream (§2)


@pytest.mark.usefixtures("flat")
def test_order_and_account_updates(simulator, venue):
    key = venue.v3("POST", "/fapi/v3/listenKey").body["listenKey"]
    with connect(f"{simulator.ws_url}/ws/{key}") as ws:
        venue.v3("POST", "/fapi/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
        trade = frames(ws, until=lambda f: f.get("e") == "ORDER_TRADE_UPDATE" and f["o"]["x"] == "TRADE")
        assert is_int(trade["E"]) and is_int(trade["T"])
        order = trade["o"]
        assert_shape(
            order,
            strings=("s", "c", "S", "o", "f", "x", "X", "wt", "ot", "ps", "N"),
            decimals=("q", "p", "ap", "sp", "l", "z", "L", "n", "rp"),
            ints=("i", "T", "t"),
            bools=("m", "R"),
        )
        assert (order["X"], order["o"], order["ps"]) == ("FILLED", "MARKET", "BOTH")
        update = frames(ws, until=lambda f: f.get("e") == "ACCOUNT_UPDATE")
        assert update["a"]["m"] == "ORDER"
        (balance,) = update["a"]["B"]
        assert_shape(balance, strings=("a",), decimals=("wb", "cw", "bc"))
        (position,) = update["a"]["P"]
        assert_shape(position, strings=("s", "mt", "ps"), decimals=("pa", "ep", "cr", "up", "iw"))
        assert position["mt"] in ("isolated", "cross") and float(position["pa"]) == 0.01


@pytest.mark.assumption
@pytest.mark.usefixtures("flat")
def test_a_triggered_stop_market_reports_market_and_keeps_its_original_type(simulator, venue):
    """ASSUMPTION (ASTER_WS.md §2.3, unconfirmed by Aster): a fired STOP_MARKET reports `o`
    MARKET and keeps STOP_MARKET in `ot`."""
    venue.v1("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    venue.v1(
        "POST", "/fapi/v1/order", symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="64000",
        closePosition="true", newClientOrderId="ws-stop",
    )  # fmt: skip
    key = venue._send("POST", "/fapi/v1/listenKey", "", {"X-MBX-APIKEY": V1_KEY}).body["listenKey"]
    with connect(f"{simulator.ws_url}/ws/{key}") as ws:
        simulator.exchange.set_price("BTCUSDT", Decimal("63900"))
        fired = frames(ws, until=lambda f: f.get("e") == "ORDER_TRADE_UPDATE" and f["o"]["X"] == "FILLED")["o"]
        assert (fired["c"], fired["o"], fired["ot"], fired["cp"]) == ("ws-stop", "MARKET", "STOP_MARKET", True)


@pytest.mark.assumption
def test_an_unknown_listen_key_is_refused(simulator):
    """ASSUMPTION: a socket on an unknown key is refused at the handshake (HTTP 400); the docs
    give -1125 for REST only (§2.2)."""
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{simulator.ws_url}/ws/{'x' * 64}")
    assert refused.value.response.status_code == 400
