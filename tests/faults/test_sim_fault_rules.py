"""Aimed simulator faults: a rule hits only the requests it is aimed at, as many as it counts.

Rules target an HTTP method and path and, for requests about one order, the order's type,
reduce-only / close-position flags and client id (for a cancel: of the order it names).
"""

import time
from decimal import Decimal

import pytest
import requests

from execution.aster.client import AsterClient
from execution.aster.errors import (
    AsterInvalidRequest,
    AsterOutcomeUnknown,
    AsterRateLimited,
    AsterTransportError,
)
from execution.aster.signing import v1_credentials, v3_credentials
from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3, DEMO_V3_PRIVATE_KEY
from execution.aster.simulator.faults import FaultRule, OrderFacts
from execution.aster.simulator.server import AsterSimulator

STOP = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stop_price": "60000", "close_position": True}


@pytest.fixture
def sim():
    with AsterSimulator(seed=11) as simulator:
        simulator.exchange.add_account(**DEMO_V1)
        simulator.exchange.add_account(**DEMO_V3)
        yield simulator


def v1_client(sim, **kwargs):
    return AsterClient(
        sim.url, v1_credentials(DEMO_V1["api_key"], DEMO_V1["api_secret"]), backoff_seconds=0.01, **kwargs
    )


def v3_client(sim):
    credentials = v3_credentials(user=DEMO_V3["user"], signer=DEMO_V3["signer"], private_key=DEMO_V3_PRIVATE_KEY)
    return AsterClient(sim.url, credentials, backoff_seconds=0.01)


def orders(sim, name="demo-v1"):
    return {o.client_order_id: o for o in sim.exchange.accounts[name].orders.values()}


def market(client, client_id, side="BUY", **kwargs):
    return client.new_order(
        symbol="BTCUSDT", side=side, type="MARKET", quantity=Decimal("0.01"), client_order_id=client_id, **kwargs
    )


def stop(client, client_id, **overrides):
    return client.new_order(**{**STOP, **overrides}, client_order_id=client_id)


# ---------------------------------------------------------------------- matching (no server)


def test_a_rule_matches_by_method_path_and_order():
    rule = FaultRule("429", order_type="STOP_MARKET", close_position=True)
    stop_facts = OrderFacts(type="STOP_MARKET", reduce_only=True, close_position=True, client_order_id="a-sl")
    assert rule.matches("POST", "/fapi/v1/order", stop_facts)
    assert rule.matches("POST", "/fapi/v3/order", stop_facts)  # "order": either API version
    assert not rule.matches("DELETE", "/fapi/v1/order", stop_facts)
    assert not rule.matches("POST", "/fapi/v1/order", OrderFacts(type="MARKET"))
    assert not rule.matches("POST", "/fapi/v1/order", OrderFacts(type="STOP_MARKET", close_position=False))
    assert not rule.matches("POST", "/fapi/v1/order", None)  # a filter on the order needs an order
    assert not rule.matches("POST", "/fapi/v1/leverage", stop_facts)


def test_paths_exact_by_name_or_any():
    assert FaultRule("429", path="/fapi/v1/order").matches("POST", "/fapi/v1/order", None)
    assert not FaultRule("429", path="/fapi/v1/order").matches("POST", "/fapi/v3/order", None)
    assert FaultRule("429", method="GET", path="positionRisk").matches("GET", "/fapi/v2/positionRisk", None)
    assert FaultRule("429", method="*", path="*").matches("DELETE", "/fapi/v1/order", None)
    assert not FaultRule("429", method="GET", path="order").matches("GET", "/fapi/v1/openOrders", None)


def test_client_id_globs_and_reduce_only():
    rule = FaultRule("-2019", order_type="MARKET", reduce_only=True, client_order_id="k*")
    assert rule.matches("POST", "/fapi/v1/order", OrderFacts(type="MARKET", reduce_only=True, client_order_id="k1-x"))
    assert not rule.matches(
        "POST", "/fapi/v1/order", OrderFacts(type="MARKET", reduce_only=False, client_order_id="k1")
    )
    assert not rule.matches("POST", "/fapi/v1/order", OrderFacts(type="MARKET", reduce_only=True, client_order_id="x1"))


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "500"},
        {"kind": "429", "method": "PATCH"},
        {"kind": "429", "count": 0},
        {"kind": "429", "order_type": "LIMIT_MAKER"},
        {"kind": "429", "seconds": -1},
        {"kind": "429", "reduce_only": "yes"},
        {"kind": "429", "surprise": 1},
        {"method": "POST"},
    ],
)
def test_bad_rules_are_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        FaultRule.from_json(bad)


# ---------------------------------------------------------------------- over HTTP


def test_a_rule_aimed_at_stop_market_does_not_hit_a_market_order(sim):
    client = v1_client(sim)
    rule = sim.faults.aim("-2021", order_type="STOP_MARKET", count=2)
    market(client, "entry-1")  # not hit
    assert rule.count == 2 and rule.hits == 0
    with pytest.raises(AsterInvalidRequest) as caught:
        stop(client, "stop-1")
    assert caught.value.code == -2021 and "stop-1" not in orders(sim)  # refused: nothing placed
    assert (rule.count, rule.hits) == (1, 1)
    with pytest.raises(AsterInvalidRequest):
        stop(client, "stop-2")
    assert (rule.count, rule.hits) == (0, 2) and sim.faults.rules == []  # spent, removed
    stop(client, "stop-3")
    assert orders(sim)["stop-3"].status == "NEW"


def test_rules_are_taken_in_order_and_each_counts_for_itself(sim):
    client = v1_client(sim)
    market(client, "entry-1")
    first = sim.faults.aim("-1111", order_type="TAKE_PROFIT_MARKET")
    second = sim.faults.aim("-4164", order_type="TAKE_PROFIT_MARKET")
    codes = []
    for index in range(3):
        try:
            stop(client, f"tp-{index}", type="TAKE_PROFIT_MARKET", stop_price="70000")
            codes.append("placed")
        except AsterInvalidRequest as exc:
            codes.append(exc.code)
    assert codes == [-1111, -4164, "placed"]
    assert first.hits == second.hits == 1


def test_reduce_only_targets_the_close_not_the_entry(sim):
    client = v1_client(sim)
    sim.faults.aim("-2019", order_type="MARKET", reduce_only=True)
    market(client, "entry-1")
    with pytest.raises(AsterInvalidRequest) as caught:
        market(client, "close-1", side="SELL", reduce_only=True)
    assert caught.value.code == -2019
    assert sim.exchange.accounts["demo-v1"].positions["BTCUSDT"].amount == Decimal("0.01")


def test_a_cancel_is_aimed_by_the_type_of_the_order_it_names(sim):
    client = v1_client(sim)
    market(client, "entry-1")
    stop(client, "p-sl")
    stop(client, "p-tp", type="TAKE_PROFIT_MARKET", stop_price="70000")
    sim.faults.aim("503_after_accept", method="DELETE", order_type="STOP_MARKET")
    client.cancel_order("BTCUSDT", client_order_id="p-tp")  # not hit
    with pytest.raises(AsterTransportError) as caught:  # a cancel is not a submission: a server error
        client.cancel_order("BTCUSDT", client_order_id="p-sl")
    assert caught.value.http_status == 503
    assert orders(sim)["p-sl"].status == "CANCELED"  # carried out all the same


def test_503_after_accept_places_the_order(sim):
    client = v1_client(sim)
    sim.faults.aim("503_after_accept", order_type="MARKET")
    with pytest.raises(AsterOutcomeUnknown):
        market(client, "entry-1")
    assert orders(sim)["entry-1"].status == "FILLED"


def test_drop_after_accept_places_the_order(sim):
    client = v1_client(sim)
    sim.faults.aim("drop_after_accept", order_type="STOP_MARKET")
    market(client, "entry-1")
    with pytest.raises(AsterOutcomeUnknown):
        stop(client, "p-sl")
    assert orders(sim)["p-sl"].status == "NEW"


def test_read_timeout_places_the_order_and_answers_too_late(sim):
    client = v1_client(sim, read_timeout=0.2)
    sim.faults.aim("read_timeout", order_type="MARKET", seconds=0.5)
    started = time.perf_counter()
    with pytest.raises(AsterOutcomeUnknown):
        market(client, "entry-1")
    assert time.perf_counter() - started >= 0.2  # the client gave up: the reply would have come at 0.5 s
    assert orders(sim)["entry-1"].status == "FILLED"
    assert client.query_order("BTCUSDT", client_order_id="entry-1").status == "FILLED"  # a new connection


def test_read_timeout_on_a_read_is_retried_by_the_client(sim):
    client = v1_client(sim, read_timeout=0.2)
    sim.faults.aim("read_timeout", method="GET", path="openOrders", seconds=0.4)
    assert client.open_orders() == []
    assert [p for _, p in sim.server.request_log].count("/fapi/v1/openOrders") == 2


def test_the_default_read_timeout_wait_is_a_switch(sim):
    client = v1_client(sim, read_timeout=0.2)
    sim.faults.read_timeout_seconds = 0.4
    sim.faults.aim("read_timeout", method="GET", path="balance", count=3)
    started = time.perf_counter()
    with pytest.raises(AsterTransportError):
        client.balances()  # three attempts, three timeouts
    assert time.perf_counter() - started >= 0.6


def test_429_carries_retry_after_and_places_nothing(sim):
    client = v1_client(sim)
    sim.faults.aim("429", order_type="MARKET", seconds=3)
    before = time.time()
    with pytest.raises(AsterRateLimited) as caught:
        market(client, "entry-1")
    assert caught.value.http_status == 429 and 2.5 <= caught.value.retry_at - before <= 3.5
    assert "entry-1" not in orders(sim)
    assert requests.get(f"{sim.url}/fapi/v1/time", timeout=5).status_code == 200  # only that request


def test_418_bans_the_ip_until_the_time_it_names(sim):
    client = v1_client(sim)
    sim.faults.aim("418", order_type="MARKET", seconds=0.5)
    with pytest.raises(AsterRateLimited) as caught:
        market(client, "entry-1")
    assert caught.value.http_status == 418 and "IP banned until" in caught.value.message
    assert "entry-1" not in orders(sim)
    banned = requests.get(f"{sim.url}/fapi/v1/time", timeout=5)
    assert banned.status_code == 418 and "IP banned until" in banned.json()["msg"]
    time.sleep(0.6)
    assert requests.get(f"{sim.url}/fapi/v1/time", timeout=5).status_code == 200


@pytest.mark.parametrize("code", [-1021, -2019, -1111, -4164, -2021])
def test_error_replies_place_nothing(sim, code):
    client = v1_client(sim)
    sim.faults.aim(str(code), order_type="MARKET")
    with pytest.raises(AsterInvalidRequest) as caught:
        market(client, "entry-1")
    assert (caught.value.code, caught.value.http_status) == (code, 400)
    assert orders(sim) == {}


def test_v3_requests_are_aimed_the_same_way(sim):
    client = v3_client(sim)
    sim.faults.aim("-1021", method="GET", path="positionRisk")
    with pytest.raises(AsterInvalidRequest):
        client.position_risk()
    assert client.position_risk()


def test_rules_over_the_admin_endpoint(sim):
    url = f"{sim.url}/_sim/faults"
    reply = requests.post(url, json={"aim": {"kind": "-2021", "order_type": "STOP_MARKET", "count": 2}}, timeout=5)
    assert reply.status_code == 200
    assert reply.json()["rules"] == [
        {
            "kind": "-2021",
            "method": "POST",
            "path": "order",
            "order_type": "STOP_MARKET",
            "reduce_only": None,
            "close_position": None,
            "client_order_id": None,
            "count": 2,
            "seconds": None,
            "hits": 0,
        }
    ]
    requests.post(url, json={"aim": [{"kind": "429", "method": "DELETE"}, {"kind": "418"}]}, timeout=5)
    state = requests.get(f"{sim.url}/_sim/state", timeout=5).json()
    assert [r["kind"] for r in state["faults"]["rules"]] == ["-2021", "429", "418"]
    assert requests.post(url, json={"aim": {"kind": "nope"}}, timeout=5).status_code == 400
    assert requests.post(url, json={"rules": [{"kind": "418"}], "latency_ms": "x"}, timeout=5).status_code == 400
    assert len(sim.faults.rules) == 3  # a refused request changes nothing
    cleared = requests.post(url, json={"rules": [], "latency_ms": 0}, timeout=5).json()
    assert cleared["rules"] == [] and sim.faults.rules == []

    requests.post(url, json={"aim": {"kind": "-2021", "order_type": "STOP_MARKET"}}, timeout=5)
    client = v1_client(sim)
    market(client, "entry-1")
    with pytest.raises(AsterInvalidRequest):
        stop(client, "p-sl")


def test_the_switches_still_hit_every_request(sim):
    client = v1_client(sim)
    sim.faults.order_503_after_accept = 1
    sim.faults.aim("-2021", order_type="STOP_MARKET")
    with pytest.raises(AsterOutcomeUnknown):
        market(client, "entry-1")
    assert sim.faults.order_503_after_accept == 0 and len(sim.faults.rules) == 1
