"""The client against the local simulator over real HTTP on loopback, for both signature schemes."""

import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from execution.aster.client import AsterClient
from execution.aster.errors import AsterInvalidRequest, AsterOutcomeUnknown, AsterRateLimited
from execution.aster.signing import v1_credentials, v3_credentials
from execution.aster.simulator.demo_accounts import DEMO_V1, DEMO_V3, DEMO_V3_PRIVATE_KEY
from execution.aster.simulator.server import AsterSimulator

ROOT = Path(__file__).resolve().parent.parent
OTHER_KEY = "0x" + "11" * 32


@pytest.fixture
def sim():
    with AsterSimulator(seed=7) as simulator:
        simulator.exchange.add_account(**DEMO_V1)
        simulator.exchange.add_account(**DEMO_V3)
        yield simulator


def v1_client(sim, secret=DEMO_V1["api_secret"]):
    return AsterClient(sim.url, v1_credentials(DEMO_V1["api_key"], secret), backoff_seconds=0.01)


def v3_client(sim, key=DEMO_V3_PRIVATE_KEY):
    return AsterClient(
        sim.url, v3_credentials(user=DEMO_V3["user"], signer=DEMO_V3["signer"], private_key=key), backoff_seconds=0.01
    )


@pytest.fixture(params=["v1", "v3"])
def client(request, sim):
    return v1_client(sim) if request.param == "v1" else v3_client(sim)


def sim_account(sim, client):
    return sim.exchange.accounts["demo-v1" if client.api_version == "v1" else "demo-v3"]


def test_market_order_walks_the_book_and_opens_a_position(sim, client):
    client.sync_time()
    book = client.order_book("BTCUSDT", limit=5)
    result = client.new_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.75"), client_order_id="e2e-entry"
    )
    assert result.status == "FILLED" and result.executed_qty == Decimal("0.75")
    # 0.5 at the best ask, 0.25 at the next level: the average is the volume-weighted one.
    expected = (book.asks[0].price * Decimal("0.5") + book.asks[1].price * Decimal("0.25")) / Decimal("0.75")
    assert result.avg_price == expected.quantize(Decimal("0.00001"))
    (position,) = client.position_risk("BTCUSDT")
    assert position.position_amt == Decimal("0.75")
    (trade,) = client.user_trades("BTCUSDT")
    assert trade.commission > 0 and trade.order_id == result.order_id


def test_stop_market_close_position_triggers_on_mark_price_and_fills_at_market(sim, client):
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="e2e-entry")
    stop = client.new_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stop_price="60000",
        close_position=True,
        working_type="MARK_PRICE",
        client_order_id="e2e-sl",
    )
    assert stop.status == "NEW"
    assert [o.client_order_id for o in client.open_orders("BTCUSDT")] == ["e2e-sl"]
    sim.exchange.set_price("BTCUSDT", Decimal("59950"))
    filled = client.query_order("BTCUSDT", client_order_id="e2e-sl")
    assert filled.status == "FILLED" and filled.executed_qty == Decimal("0.01")
    assert filled.avg_price < Decimal("59950")  # filled at the bid after triggering, not at the stop price
    assert client.position_risk("BTCUSDT")[0].position_amt == 0
    assert client.open_orders("BTCUSDT") == []


def test_take_profit_with_reduce_only_quantity_on_last_price(sim, client):
    client.new_order(symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1", client_order_id="short")
    client.new_order(
        symbol="ETHUSDT",
        side="BUY",
        type="TAKE_PROFIT_MARKET",
        stop_price="3400",
        quantity="1",
        reduce_only=True,
        working_type="CONTRACT_PRICE",
        client_order_id="tp",
    )
    sim.exchange.set_price("ETHUSDT", Decimal("3399"))
    assert client.query_order("ETHUSDT", client_order_id="tp").status == "FILLED"
    assert client.position_risk("ETHUSDT")[0].position_amt == 0


def test_stop_that_would_trigger_at_once_is_refused(sim, client):
    with pytest.raises(AsterInvalidRequest) as caught:
        client.new_order(
            symbol="BTCUSDT",
            side="SELL",
            type="STOP_MARKET",
            stop_price="70000",
            close_position=True,
            working_type="MARK_PRICE",
            client_order_id="bad-sl",
        )
    assert caught.value.code == -2021


def test_cancel_and_unknown_order(sim, client):
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="entry")
    client.new_order(
        symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stop_price="60000", close_position=True, client_order_id="sl"
    )
    assert client.cancel_order("BTCUSDT", client_order_id="sl").status == "CANCELED"
    with pytest.raises(AsterInvalidRequest) as caught:
        client.cancel_order("BTCUSDT", client_order_id="sl")
    assert caught.value.code == -2011
    with pytest.raises(AsterInvalidRequest) as caught:
        client.query_order("BTCUSDT", client_order_id="never-sent")
    assert caught.value.code == -2013


def test_exchange_side_refusals_carry_their_codes(sim, client):
    account = sim_account(sim, client)
    account.balance = Decimal("10")
    with pytest.raises(AsterInvalidRequest) as margin:
        client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1", client_order_id="big")
    assert margin.value.code == -2019
    with pytest.raises(AsterInvalidRequest) as notional:
        client.new_order(symbol="ASTERUSDT", side="BUY", type="MARKET", quantity="1", client_order_id="tiny")
    assert notional.value.code == -4164
    with pytest.raises(AsterInvalidRequest) as reduce_only:
        client.new_order(
            symbol="SOLUSDT", side="SELL", type="MARKET", quantity="1", reduce_only=True, client_order_id="ro"
        )
    assert reduce_only.value.code == -2022


def test_account_configuration_endpoints(sim, client):
    client.set_position_mode(hedge=False)  # already one-way: -4059 is success
    client.set_margin_type("BTCUSDT", "ISOLATED")
    client.set_margin_type("BTCUSDT", "ISOLATED")  # -4046 is success
    assert client.set_leverage("BTCUSDT", 5).leverage == 5
    assert client.leverage_brackets("BTCUSDT")[0].brackets[0].maint_margin_ratio == Decimal("0.004")
    assert client.balances()[0].asset == "USDT"
    client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="x")
    assert client.position_risk("BTCUSDT")[0].leverage == 5


def test_market_data_over_http(sim):
    client = AsterClient(sim.url)
    prices = client.ticker_prices()
    assert {"BTCUSDT", "ETHUSDT"} <= set(prices)
    assert client.premium_indexes()["BTCUSDT"].mark_price > 0
    sim.exchange.set_price("BTCUSDT", Decimal("64000"))
    sim.exchange.set_price("BTCUSDT", Decimal("66000"))
    (candle,) = client.klines("BTCUSDT", limit=1)
    assert candle.low <= Decimal("64000") and candle.high >= Decimal("66000")
    assert client.funding_rates("BTCUSDT", limit=3)


def test_wrong_v1_secret_gets_minus_1022(sim):
    client = v1_client(sim, secret="0" * 64)
    with pytest.raises(AsterInvalidRequest) as caught:
        client.balances()
    assert caught.value.code == -1022
    assert "-1022" in str(caught.value) and "INVALID_SIGNATURE" in str(caught.value)


def test_wrong_v3_key_gets_minus_1022(sim):
    client = v3_client(sim, key=OTHER_KEY)
    with pytest.raises(AsterInvalidRequest) as caught:
        client.position_risk()
    assert caught.value.code == -1022


def test_v1_clock_skew_is_refused_until_the_client_syncs(sim):
    client = AsterClient(
        sim.url, v1_credentials(DEMO_V1["api_key"], DEMO_V1["api_secret"]), clock=lambda: time.time() + 30
    )
    with pytest.raises(AsterInvalidRequest) as caught:
        client.balances()
    assert caught.value.code == -1021
    client.sync_time()
    assert client.balances()


def test_v3_reused_nonce_is_refused(sim):
    client = v3_client(sim)
    fixed = int(time.time() * 1_000_000)
    client._signer.nonce = lambda: fixed  # type: ignore[union-attr]
    client.balances()
    with pytest.raises(AsterInvalidRequest) as caught:
        client.balances()
    assert caught.value.code == -4225


def test_503_after_accept_is_unknown_with_exactly_one_order_on_the_exchange(sim, client):
    sim.faults.order_503_after_accept = 1
    with pytest.raises(AsterOutcomeUnknown) as caught:
        client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="ambiguous-1")
    assert caught.value.client_order_id == "ambiguous-1"
    posts = [entry for entry in sim.server.request_log if entry[0] == "POST" and entry[1].endswith("/order")]
    assert len(posts) == 1
    resolved = client.query_order("BTCUSDT", client_order_id="ambiguous-1")
    assert resolved.status == "FILLED"
    assert len(sim_account(sim, client).orders) == 1


def test_dropped_connection_after_accept_is_unknown(sim, client):
    sim.faults.order_drop_after_accept = 1
    with pytest.raises(AsterOutcomeUnknown):
        client.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="dropped-1")
    assert client.query_order("BTCUSDT", client_order_id="dropped-1").status == "FILLED"


def test_dropped_connection_on_a_read_is_retried(sim, client):
    sim.faults.drop_next = 1
    assert client.position_risk("BTCUSDT")
    assert sim.faults.drop_next == 0


def test_simulated_429_raises_rate_limited_and_sets_the_backoff(sim):
    client = AsterClient(sim.url)
    sim.faults.rate_limit_next = 1
    with pytest.raises(AsterRateLimited):
        client.server_time()
    with pytest.raises(AsterRateLimited):
        client.server_time()  # still backing off: nothing sent
    assert [p for _, p in sim.server.request_log].count("/fapi/v1/time") == 1


def test_latency_fault_delays_replies(sim):
    client = AsterClient(sim.url)
    sim.faults.latency_ms = 150
    started = time.perf_counter()
    client.server_time()
    assert time.perf_counter() - started >= 0.15


def test_weight_header_is_reported(sim):
    response = requests.get(f"{sim.url}/fapi/v1/depth?symbol=BTCUSDT&limit=5", timeout=5)
    assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) >= 5


def test_admin_controls_over_http(sim):
    requests.post(f"{sim.url}/_sim/faults", json={"latency_ms": 0, "rate_limit_next": 0}, timeout=5).raise_for_status()
    bad = requests.post(f"{sim.url}/_sim/faults", json={"no_such_fault": 1}, timeout=5)
    assert bad.status_code == 400
    requests.post(f"{sim.url}/_sim/price", json={"symbol": "BTCUSDT", "price": "61000"}, timeout=5).raise_for_status()
    requests.post(
        f"{sim.url}/_sim/orders",
        json={"account": "demo-v1", "symbol": "SOLUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"},
        timeout=5,
    ).raise_for_status()
    state = requests.get(f"{sim.url}/_sim/state", timeout=5).json()
    assert state["symbols"]["BTCUSDT"]["price"] == "61000"
    assert state["accounts"]["demo-v1"]["positions"]["SOLUSDT"]["amount"] == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_aster_sim_command_serves_the_api():
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "aster_sim", "--port", str(port), "--tick-seconds", "0.2", "--seed", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = AsterClient(f"http://127.0.0.1:{port}", v1_credentials(DEMO_V1["api_key"], DEMO_V1["api_secret"]))
        for _ in range(100):
            try:
                client.server_time()
                break
            except Exception:
                time.sleep(0.1)
        first = client.ticker_prices()["BTCUSDT"].price
        assert client.balances()[0].asset == "USDT"
        time.sleep(1.0)
        assert client.ticker_prices()["BTCUSDT"].price != first  # prices move
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_aster_sim_command_rejects_bad_options():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "aster_sim", "--port", "70000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--port" in result.stderr
    result = subprocess.run(
        [sys.executable, "manage.py", "aster_sim", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "loopback" in result.stderr


def test_the_request_log_keeps_only_the_latest_requests():
    from execution.aster.simulator.server import REQUEST_LOG_SIZE

    paths = ["/fapi/v1/time", "/fapi/v1/ticker/price", "/fapi/v1/premiumIndex", "/fapi/v1/exchangeInfo", "/_sim/state"]
    with AsterSimulator(seed=1, request_log_size=3) as simulator, requests.Session() as http:
        for path in paths:
            assert http.get(f"{simulator.url}{path}", timeout=5).status_code == 200
        assert list(simulator.server.request_log) == [("GET", path) for path in paths[-3:]]
    with AsterSimulator(seed=1) as simulator:
        assert simulator.server.request_log.maxlen == REQUEST_LOG_SIZE == 10_000
    with pytest.raises(ValueError, match="request_log_size"):
        AsterSimulator(request_log_size=-1)


def test_aster_sim_command_rejects_a_negative_request_log_size():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "aster_sim", "--port", "0", "--request-log-size", "-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--request-log-size" in result.stderr
