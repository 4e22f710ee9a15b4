"""The simulator's listenKey REST and user-data streams over real sockets (ASTER_WS.md §2), V1 and V3."""

import json
import re
import time
from decimal import Decimal

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from execution.aster.client import AsterClient
from execution.aster.signing import V3Signer, v1_credentials, v3_credentials
from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3, DEMO_V3_PRIVATE_KEY
from execution.aster.simulator.server import AsterSimulator

ORDER_KEYS = {
    "s", "c", "S", "o", "f", "q", "p", "ap", "sp", "x", "X", "i", "l", "z", "L", "T", "t", "b", "a", "m", "R",
    "wt", "ot", "ps", "rp",
}  # fmt: skip
V3_CREDENTIALS = v3_credentials(user=DEMO_V3["user"], signer=DEMO_V3["signer"], private_key=DEMO_V3_PRIVATE_KEY)
ACCOUNTS = {"v1": "demo-v1", "v3": "demo-v3"}


def make_simulator(**options) -> AsterSimulator:
    sim = AsterSimulator(seed=11, **options).start()
    sim.exchange.add_account(**DEMO_V1)
    sim.exchange.add_account(**DEMO_V3)
    return sim


@pytest.fixture
def simulator():
    sim = make_simulator()
    yield sim
    sim.stop()


@pytest.fixture(params=["v1", "v3"])
def version(request) -> str:
    return request.param


def listen_key_call(sim: AsterSimulator, version: str, method: str, **params: str) -> requests.Response:
    """The listenKey endpoint as the docs describe it: V1 with the API-key header only (no
    timestamp, no signature), V3 EIP-712 signed like every other V3 call."""
    if version == "v1":
        return requests.request(
            method,
            f"{sim.url}/fapi/v1/listenKey",
            data=params,
            headers={"X-MBX-APIKEY": DEMO_V1["api_key"]},
            timeout=5,
        )
    payload = V3Signer(V3_CREDENTIALS).sign(list(params.items())).payload
    return requests.request(
        method,
        f"{sim.url}/fapi/v3/listenKey",
        data=payload,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )


def new_listen_key(sim: AsterSimulator, version: str) -> str:
    reply = listen_key_call(sim, version, "POST")
    assert reply.status_code == 200, reply.text
    return reply.json()["listenKey"]


def rest_client(sim: AsterSimulator, version: str) -> AsterClient:
    if version == "v1":
        return AsterClient(sim.url, v1_credentials(DEMO_V1["api_key"], DEMO_V1["api_secret"]), backoff_seconds=0.01)
    return AsterClient(sim.url, V3_CREDENTIALS, backoff_seconds=0.01)


def user_socket(sim: AsterSimulator, key: str) -> ClientConnection:
    return connect(f"{sim.ws_url}/ws/{key}")


@pytest.fixture
def stream(simulator, version):
    """(REST client, user-data socket) of the version's demo account."""
    key = new_listen_key(simulator, version)
    with user_socket(simulator, key) as ws:
        yield rest_client(simulator, version), ws


def events(ws: ClientConnection, count: int, timeout: float = 2.0) -> list[dict]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]


def order_events(received: list[dict]) -> list[dict]:
    return [e["o"] for e in received if e["e"] == "ORDER_TRADE_UPDATE"]


def silent(ws: ClientConnection, seconds: float = 0.3) -> bool:
    try:
        ws.recv(timeout=seconds)
    except TimeoutError:
        return True
    return False


def open_long(client: AsterClient, quantity: str = "0.5") -> None:
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal(quantity), client_order_id="entry")


# ---------------------------------------------------------------------- listenKey REST


def test_listen_key_lifecycle(simulator, version):
    key = new_listen_key(simulator, version)
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key)
    assert new_listen_key(simulator, version) == key  # the active key, extended
    assert listen_key_call(simulator, version, "PUT").json() == {}
    assert listen_key_call(simulator, version, "DELETE").json() == {}
    for method in ("PUT", "DELETE"):
        gone = listen_key_call(simulator, version, method)
        assert gone.status_code == 400
        assert gone.json() == {"code": -1125, "msg": "This listenKey does not exist."}
    assert new_listen_key(simulator, version) != key


def test_keepalive_naming_another_key_is_refused(simulator, version):
    new_listen_key(simulator, version)
    reply = listen_key_call(simulator, version, "PUT", listenKey="x" * 64)
    assert reply.json()["code"] == -1125


def test_listen_key_needs_its_credentials(simulator):
    no_key = requests.post(f"{simulator.url}/fapi/v1/listenKey", timeout=5)
    assert no_key.status_code == 401 and no_key.json()["code"] == -2015
    unsigned = requests.post(f"{simulator.url}/fapi/v3/listenKey", data={"signer": DEMO_V3["signer"]}, timeout=5)
    assert unsigned.status_code == 400 and unsigned.json()["code"] == -1102


def test_keepalive_extends_and_a_lapsed_key_is_expired_on_its_socket(version):
    sim = make_simulator(listen_key_seconds=0.8)
    try:
        key = new_listen_key(sim, version)
        with user_socket(sim, key) as ws:
            time.sleep(0.5)
            assert listen_key_call(sim, version, "PUT").json() == {}
            time.sleep(0.5)  # 1.0 s after creation, 0.5 s after the keepalive: still live
            assert listen_key_call(sim, version, "PUT").json() == {}
            expired = json.loads(ws.recv(timeout=2))
            assert set(expired) == {"e", "E"} and expired["e"] == "listenKeyExpired" and isinstance(expired["E"], int)
            assert listen_key_call(sim, version, "PUT").json()["code"] == -1125
            open_long(rest_client(sim, version))
            assert silent(ws)  # nothing more on a socket whose key lapsed
        with pytest.raises(InvalidStatus) as refused:
            user_socket(sim, key)
        assert refused.value.response.status_code == 400
        assert new_listen_key(sim, version) != key
    finally:
        sim.stop()


def test_delete_closes_the_keys_sockets(simulator, version):
    with user_socket(simulator, new_listen_key(simulator, version)) as ws:
        listen_key_call(simulator, version, "DELETE")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


# ---------------------------------------------------------------------- order events


def test_market_order_new_trade_filled_then_account_update(simulator, version, stream):
    client, ws = stream
    result = client.new_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.75"), client_order_id="e2e-buy"
    )
    received = events(ws, 3)
    assert [e["e"] for e in received] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    times = [e["E"] for e in received]
    assert times == sorted(times) and len(set(times)) == 3  # strictly increasing
    new, trade = order_events(received)
    assert set(new) == ORDER_KEYS  # no commission on NEW: N and n are left out; no cp on a market order
    assert new["x"] == "NEW" and new["X"] == "NEW" and new["o"] == "MARKET" and new["ot"] == "MARKET"
    assert new["l"] == "0" and new["z"] == "0" and new["t"] == 0 and new["i"] == result.order_id
    assert set(trade) == ORDER_KEYS | {"N", "n"}
    assert trade["x"] == "TRADE" and trade["X"] == "FILLED" and trade["c"] == "e2e-buy" and trade["S"] == "BUY"
    assert trade["l"] == trade["z"] == trade["q"] == "0.75"
    assert Decimal(trade["ap"]) == result.avg_price and trade["ps"] == "BOTH" and trade["m"] is False
    assert trade["R"] is False and trade["rp"] == "0" and trade["N"] == "USDT" and Decimal(trade["n"]) > 0
    rest_trade = client.user_trades("BTCUSDT")[-1]
    assert trade["t"] == rest_trade.id and Decimal(trade["L"]) == rest_trade.price
    update = received[2]["a"]
    assert update["m"] == "ORDER"
    wallet = simulator.exchange.accounts[ACCOUNTS[version]].balance
    assert update["B"] == [{"a": "USDT", "wb": str(wallet.normalize()), "cw": str(wallet.normalize()), "bc": "0"}]
    [row] = update["P"]
    assert set(row) == {"s", "pa", "ep", "cr", "up", "mt", "iw", "ps"}
    assert row["s"] == "BTCUSDT" and row["pa"] == "0.75" and Decimal(row["ep"]) == Decimal(trade["L"])
    assert row["mt"] == "cross" and row["ps"] == "BOTH" and row["iw"] == "0"


def test_closing_fill_reports_realized_pnl_and_a_zero_position(simulator, stream):
    client, ws = stream
    open_long(client)
    events(ws, 3)
    simulator.exchange.set_price("BTCUSDT", Decimal("66000"))
    client.new_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity=Decimal("0.5"), reduce_only=True, client_order_id="close"
    )
    _new, trade, update = events(ws, 3)
    assert trade["o"]["R"] is True and trade["o"]["X"] == "FILLED" and Decimal(trade["o"]["rp"]) > 0
    [row] = update["a"]["P"]
    assert row["pa"] == "0" and row["ep"] == "0" and row["up"] == "0" and row["cr"] == trade["o"]["rp"]


@pytest.mark.parametrize(
    ("order_type", "stop", "move"), [("STOP_MARKET", "64000", "63900"), ("TAKE_PROFIT_MARKET", "66000", "66100")]
)
def test_triggered_conditional_fills_as_a_market_trade_with_its_original_type(
    simulator, stream, order_type, stop, move
):
    client, ws = stream
    open_long(client)
    events(ws, 3)
    placed = client.new_order(
        symbol="BTCUSDT",
        side="SELL",
        type=order_type,
        stop_price=Decimal(stop),
        close_position=True,
        working_type="MARK_PRICE",
        client_order_id="leg",
    )
    [new] = order_events(events(ws, 1))
    assert new["x"] == "NEW" and new["o"] == order_type and new["ot"] == order_type
    assert new["cp"] is True and new["sp"] == stop and new["wt"] == "MARK_PRICE" and new["q"] == "0"
    simulator.exchange.set_price("BTCUSDT", Decimal(move))
    received = events(ws, 2)
    [trade] = order_events(received)
    assert trade["i"] == placed.order_id and trade["c"] == "leg"
    assert trade["x"] == "TRADE" and trade["X"] == "FILLED" and trade["o"] == "MARKET" and trade["ot"] == order_type
    assert trade["cp"] is True and trade["sp"] == stop and trade["z"] == trade["l"] == "0.5"
    assert received[1]["e"] == "ACCOUNT_UPDATE" and received[1]["a"]["P"][0]["pa"] == "0"


def test_a_reduce_only_stop_larger_than_the_position_fills_the_position_and_is_done(simulator, stream):
    client, ws = stream
    open_long(client)
    client.new_order(
        symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stop_price=Decimal("64000"), quantity=Decimal("0.8"),
        reduce_only=True, client_order_id="sl",
    )  # fmt: skip
    events(ws, 4)
    simulator.exchange.set_price("BTCUSDT", Decimal("63900"))
    [trade] = order_events(events(ws, 2))
    assert trade["q"] == "0.8" and trade["l"] == trade["z"] == "0.5" and trade["X"] == "FILLED" and trade["R"] is True
    assert "cp" in trade and trade["cp"] is False
    assert client.open_orders("BTCUSDT") == []


def test_cancel_through_rest_and_behind_the_services_back(simulator, version, stream):
    client, ws = stream
    open_long(client)
    events(ws, 3)
    for client_id in ("sl", "tp"):
        stop = "60000" if client_id == "sl" else "70000"
        kind = "STOP_MARKET" if client_id == "sl" else "TAKE_PROFIT_MARKET"
        client.new_order(
            symbol="BTCUSDT",
            side="SELL",
            type=kind,
            stop_price=Decimal(stop),
            close_position=True,
            client_order_id=client_id,
        )
    events(ws, 2)
    client.cancel_order("BTCUSDT", client_order_id="sl")
    [cancelled] = order_events(events(ws, 1))
    assert cancelled["c"] == "sl" and cancelled["x"] == "CANCELED" and cancelled["X"] == "CANCELED"
    reply = requests.post(
        f"{simulator.url}/_sim/cancel", json={"account": ACCOUNTS[version], "origClientOrderId": "tp"}, timeout=5
    )
    assert reply.status_code == 200 and reply.json()["status"] == "CANCELED"
    [cancelled] = order_events(events(ws, 1))
    assert cancelled["c"] == "tp" and cancelled["x"] == "CANCELED" and cancelled["ot"] == "TAKE_PROFIT_MARKET"
    assert silent(ws)  # a cancel changes no balance or position: no ACCOUNT_UPDATE


def test_a_close_position_leg_left_without_a_position_expires_when_it_triggers(simulator, stream):
    client, ws = stream
    open_long(client)
    for client_id, kind, stop in (("sl", "STOP_MARKET", "64000"), ("tp", "TAKE_PROFIT_MARKET", "66000")):
        client.new_order(
            symbol="BTCUSDT",
            side="SELL",
            type=kind,
            stop_price=Decimal(stop),
            close_position=True,
            client_order_id=client_id,
        )
    events(ws, 5)
    simulator.exchange.set_price("BTCUSDT", Decimal("63900"))  # the stop closes the position
    events(ws, 2)
    assert silent(ws)  # the take-profit still rests, as on the exchange
    simulator.exchange.set_price("BTCUSDT", Decimal("66100"))
    [expired] = order_events(events(ws, 1))
    assert expired["c"] == "tp" and expired["x"] == "EXPIRED" and expired["X"] == "EXPIRED" and expired["z"] == "0"
    assert silent(ws)


def test_liquidation_closes_the_position_loses_the_margin_and_cancels_the_legs(simulator, version, stream):
    client, ws = stream
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("1"), client_order_id="entry")
    client.new_order(
        symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT_MARKET", stop_price=Decimal("70000"), close_position=True,
        client_order_id="tp",
    )  # fmt: skip
    events(ws, 4)
    [position] = client.position_risk("BTCUSDT")
    liquidation = position.liquidation_price
    assert liquidation is not None
    account = simulator.exchange.accounts[ACCOUNTS[version]]
    wallet_before = account.balance
    simulator.exchange.set_price("BTCUSDT", liquidation + Decimal("1"))
    assert silent(ws)  # not crossed yet
    simulator.exchange.set_price("BTCUSDT", liquidation - Decimal("1"))
    cancelled, liquidated, update = events(ws, 3)
    assert cancelled["o"]["c"] == "tp" and cancelled["o"]["X"] == "CANCELED"
    order = liquidated["o"]
    assert re.fullmatch(r"autoclose-\d+", order["c"])
    assert order["o"] == "LIQUIDATION" and order["ot"] == "LIQUIDATION" and order["X"] == "FILLED"
    assert order["x"] == "CALCULATED" and order["S"] == "SELL" and order["z"] == order["l"] == "1"
    margin = position.entry_price / 20
    assert Decimal(order["rp"]) == pytest.approx(-margin, abs=Decimal("1"))  # the margin is lost
    assert update["a"]["P"][0]["pa"] == "0"
    assert Decimal(update["a"]["B"][0]["wb"]) == account.balance < wallet_before - margin + Decimal("1")
    assert client.position_risk("BTCUSDT")[0].position_amt == 0
    assert client.open_orders("BTCUSDT") == []
    assert client.query_order("BTCUSDT", client_order_id=order["c"]).status == "FILLED"


def test_partial_fills_come_as_several_trades(simulator, version, stream):
    client, ws = stream
    reply = requests.post(
        f"{simulator.url}/_sim/split_fills", json={"account": ACCOUNTS[version], "parts": 3}, timeout=5
    )
    assert reply.json() == {"ok": True}
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.9"), client_order_id="split")
    received = events(ws, 7)
    assert [e["e"] for e in received] == ["ORDER_TRADE_UPDATE"] + ["ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"] * 3
    new, *trades = order_events(received)
    assert new["x"] == "NEW"
    assert [t["X"] for t in trades] == ["PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"]
    assert [t["l"] for t in trades] == ["0.3", "0.3", "0.3"] and [t["z"] for t in trades] == ["0.3", "0.6", "0.9"]
    assert len({t["t"] for t in trades}) == 3
    assert [row["a"]["P"][0]["pa"] for row in received if row["e"] == "ACCOUNT_UPDATE"] == ["0.3", "0.6", "0.9"]
    assert len(client.user_trades("BTCUSDT")) == 3
    # Only the next fill was split.
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.1"), client_order_id="whole")
    assert [e["e"] for e in events(ws, 3)] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]


def test_events_reach_only_the_accounts_own_sockets(simulator):
    with (
        user_socket(simulator, new_listen_key(simulator, "v1")) as v1,
        user_socket(simulator, new_listen_key(simulator, "v3")) as v3,
        user_socket(simulator, new_listen_key(simulator, "v3")) as v3_again,
    ):
        open_long(rest_client(simulator, "v3"))
        assert [e["e"] for e in events(v3, 3)] == [e["e"] for e in events(v3_again, 3)]
        assert silent(v1)


# ---------------------------------------------------------------------- per-account faults


def test_hold_then_release_sends_the_events_in_order(simulator, version, stream):
    client, ws = stream
    account = ACCOUNTS[version]
    assert requests.post(f"{simulator.url}/_sim/ws/hold", json={"account": account}, timeout=5).json() == {"ok": True}
    open_long(client)
    client.new_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=Decimal("0.2"), client_order_id="trim")
    assert silent(ws, 0.5)
    reply = requests.post(f"{simulator.url}/_sim/ws/release", json={"account": account}, timeout=5)
    assert reply.json() == {"released": 6}
    received = events(ws, 6)
    assert [e["E"] for e in received] == sorted(e["E"] for e in received)
    assert [(o["c"], o["x"]) for o in order_events(received)] == [
        ("entry", "NEW"), ("entry", "TRADE"), ("trim", "NEW"), ("trim", "TRADE"),
    ]  # fmt: skip
    open_long(client)  # released: events flow again at once
    assert len(events(ws, 3)) == 3


def test_expire_key_control(simulator, version, stream):
    client, ws = stream
    reply = requests.post(f"{simulator.url}/_sim/ws/expire_key", json={"account": ACCOUNTS[version]}, timeout=5)
    assert reply.json() == {"ok": True}
    assert json.loads(ws.recv(timeout=2))["e"] == "listenKeyExpired"
    assert listen_key_call(simulator, version, "PUT").json()["code"] == -1125
    open_long(client)
    assert silent(ws)
    with user_socket(simulator, new_listen_key(simulator, version)) as fresh:
        open_long(client)
        assert len(events(fresh, 3)) == 3


def test_drop_user_sockets_leaves_the_key_and_other_sockets(simulator, version, stream):
    client, ws = stream
    other = "demo-v3" if version == "v1" else "demo-v1"
    with user_socket(simulator, new_listen_key(simulator, "v3" if version == "v1" else "v1")) as bystander:
        reply = requests.post(f"{simulator.url}/_sim/ws/drop_user", json={"account": ACCOUNTS[version]}, timeout=5)
        assert reply.json() == {"dropped": 1}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
        assert simulator.drop_user_sockets(other) == 1
        with pytest.raises(ConnectionClosed):
            bystander.recv(timeout=2)
    key = new_listen_key(simulator, version)  # the same key, still live
    with user_socket(simulator, key) as again:
        open_long(client)
        assert len(events(again, 3)) == 3


def test_account_controls_refuse_an_unknown_account(simulator):
    for path in ("hold", "release", "expire_key", "drop_user"):
        reply = requests.post(f"{simulator.url}/_sim/ws/{path}", json={"account": "nobody"}, timeout=5)
        assert reply.status_code == 400
    assert (
        requests.post(
            f"{simulator.url}/_sim/split_fills", json={"account": "demo-v1", "parts": 0}, timeout=5
        ).status_code
        == 400
    )
