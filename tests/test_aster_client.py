"""AsterClient against `responses`: every endpoint's documented payload, error and input check."""

from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from responses import matchers

from execution.aster.client import AsterClient
from execution.aster.errors import (
    AsterInputError,
    AsterInvalidRequest,
    AsterOutcomeUnknown,
    AsterRateLimited,
    AsterResponseError,
    AsterTransportError,
)
from execution.aster.signing import v1_credentials, v3_credentials
from tests import aster_payloads as P
from tests.factories import DEMO_V1_API_KEY, DEMO_V1_API_SECRET, DEMO_V3_PRIVATE_KEY, DEMO_V3_SIGNER, DEMO_V3_USER

BASE = "http://aster.test"
NOW = 1_700_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time():
    return FakeTime()


def make_client(fake_time, credentials=None, **kwargs):
    return AsterClient(BASE, credentials, clock=fake_time.clock, sleep=fake_time.sleep, **kwargs)


@pytest.fixture
def public(fake_time):
    return make_client(fake_time)


@pytest.fixture
def v1(fake_time):
    return make_client(fake_time, v1_credentials(DEMO_V1_API_KEY, DEMO_V1_API_SECRET))


@pytest.fixture
def v3(fake_time):
    return make_client(
        fake_time, v3_credentials(user=DEMO_V3_USER, signer=DEMO_V3_SIGNER, private_key=DEMO_V3_PRIVATE_KEY)
    )


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{BASE}/fapi/v1/exchangeInfo", json=P.EXCHANGE_INFO)
        yield rsps


def sent_params(call) -> list[tuple[str, str]]:
    request = call.request
    raw = request.body if request.body else urlsplit(request.url).query
    if isinstance(raw, bytes):
        raw = raw.decode()
    return parse_qsl(raw)


def order_calls(rsps):
    return [c for c in rsps.calls if urlsplit(c.request.url).path.endswith("/order")]


# ----------------------------------------------------------------------------- market data


def test_exchange_info_rules_read_both_documented_spellings(public, mocked):
    btc = public.symbol_rules("BTCUSDT")
    assert (btc.tick_size, btc.step_size, btc.market_step_size) == (Decimal("0.1"), Decimal("0.001"), Decimal("0.001"))
    assert (btc.min_qty, btc.market_max_qty, btc.min_notional) == (Decimal("0.001"), Decimal("120"), Decimal("5"))
    assert btc.liquidation_fee == Decimal("0.010000")
    assert "STOP_MARKET" in btc.order_types
    doge = public.symbol_rules("DOGEUSDT")
    assert doge.min_notional == Decimal("5.0")
    assert doge.order_types == ("LIMIT", "MARKET")
    assert doge.market_step_size == Decimal("1")  # no MARKET_LOT_SIZE: LOT_SIZE applies
    assert public.exchange_info().weight_limit_1m == 2400


def test_exchange_info_is_cached_for_its_ttl(fake_time, mocked):
    client = make_client(fake_time, exchange_info_ttl=300)
    client.symbol_rules("BTCUSDT")
    client.symbol_rules("DOGEUSDT")
    assert len(mocked.calls) == 1
    fake_time.now += 301
    client.symbol_rules("BTCUSDT")
    assert len(mocked.calls) == 2


def test_unknown_and_malformed_symbols_are_input_errors(public, mocked):
    with pytest.raises(AsterInputError, match="unknown symbol"):
        public.symbol_rules("NOPEUSDT")
    with pytest.raises(AsterInputError, match="symbol"):
        public.order_book("btc usdt")


def test_order_book_is_parsed_best_first(public, mocked):
    mocked.get(
        f"{BASE}/fapi/v1/depth", json=P.DEPTH, match=[matchers.query_param_matcher({"symbol": "BTCUSDT", "limit": "5"})]
    )
    book = public.order_book("BTCUSDT", limit=5)
    assert book.bids[0].price == Decimal("64999.5") and book.asks[0].price == Decimal("65000.5")
    assert book.time_ms == 1589436922959
    with pytest.raises(AsterInputError, match="limit"):
        public.order_book("BTCUSDT", limit=7)


def test_ticker_prices(public, mocked):
    mocked.get(
        f"{BASE}/fapi/v1/ticker/price",
        json=[{"symbol": "BTCUSDT", "price": "6000.01", "time": 1}, {"symbol": "ETHUSDT", "price": "200", "time": 1}],
        match=[matchers.query_param_matcher({})],
    )
    prices = public.ticker_prices()
    assert set(prices) == {"BTCUSDT", "ETHUSDT"} and prices["BTCUSDT"].price == Decimal("6000.01")


def test_premium_index_one_and_all(public, mocked):
    mocked.get(
        f"{BASE}/fapi/v1/premiumIndex",
        json=P.PREMIUM_INDEX,
        match=[matchers.query_param_matcher({"symbol": "BTCUSDT"})],
    )
    mocked.get(f"{BASE}/fapi/v1/premiumIndex", json=[P.PREMIUM_INDEX], match=[matchers.query_param_matcher({})])
    index = public.premium_index("BTCUSDT")
    assert (index.mark_price, index.last_funding_rate) == (Decimal("65000.1"), Decimal("0.0001"))
    assert index.next_funding_time_ms == 1597392000000
    assert public.premium_indexes()["BTCUSDT"].index_price == Decimal("65001")


def test_klines_and_funding_history(public, mocked):
    mocked.get(
        f"{BASE}/fapi/v1/klines",
        json=P.KLINES,
        match=[matchers.query_param_matcher({"symbol": "BTCUSDT", "interval": "1m", "startTime": "1", "limit": "10"})],
    )
    mocked.get(
        f"{BASE}/fapi/v1/fundingRate",
        json=[{"symbol": "BTCUSDT", "fundingRate": "-0.03750000", "fundingTime": 1570608000000}],
    )
    (kline,) = public.klines("BTCUSDT", start_time_ms=1, limit=10)
    assert (kline.high, kline.low, kline.close_time_ms) == (Decimal("0.8"), Decimal("0.015758"), 1499644799999)
    assert public.funding_rates("BTCUSDT")[0].funding_rate == Decimal("-0.0375")
    with pytest.raises(AsterInputError):
        public.klines("BTCUSDT", start_time_ms=-5)


def test_server_time_sync_sets_the_v1_timestamp_offset(v1, fake_time, mocked):
    mocked.get(f"{BASE}/fapi/v1/time", json={"serverTime": int(NOW * 1000) + 1500})
    assert v1.sync_time() == 1500
    assert v1.now_ms() == int(NOW * 1000) + 1500


# ----------------------------------------------------------------------------- signed: orders


def test_market_order_is_rounded_signed_and_parsed(v1, mocked):
    mocked.post(f"{BASE}/fapi/v1/order", json=P.ORDER_FILLED)
    result = v1.new_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.0105"), client_order_id="entry-1"
    )
    assert (result.status, result.executed_qty, result.avg_price) == ("FILLED", Decimal("0.01"), Decimal("65000.5"))
    (call,) = order_calls(mocked)
    params = sent_params(call)
    assert [k for k, _ in params] == [
        "symbol",
        "side",
        "type",
        "quantity",
        "newClientOrderId",
        "newOrderRespType",
        "recvWindow",
        "timestamp",
        "signature",
    ]
    assert dict(params)["quantity"] == "0.01"  # rounded down to MARKET_LOT_SIZE step
    assert call.request.headers["X-MBX-APIKEY"] == DEMO_V1_API_KEY
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_stop_market_close_position_parameters(v3, mocked):
    mocked.post(f"{BASE}/fapi/v3/order", json=P.ORDER_STOP_NEW)
    v3.new_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stop_price=Decimal("60000.04"),
        close_position=True,
        working_type="MARK_PRICE",
        client_order_id="sl-1",
    )
    params = dict(sent_params(order_calls(mocked)[0]))
    assert params["stopPrice"] == "60000"  # tick-rounded, no exponent
    assert params["closePosition"] == "true" and "quantity" not in params and "reduceOnly" not in params
    assert params["workingType"] == "MARK_PRICE"
    assert {"nonce", "user", "signer", "signature"} <= set(params)


def test_query_cancel_and_open_orders(v1, mocked):
    mocked.get(f"{BASE}/fapi/v1/order", json=P.ORDER_STOP_NEW)
    mocked.delete(f"{BASE}/fapi/v1/order", json={**P.ORDER_STOP_NEW, "status": "CANCELED"})
    mocked.get(f"{BASE}/fapi/v1/openOrders", json=[P.ORDER_STOP_NEW])
    assert v1.query_order("BTCUSDT", client_order_id="sl-1").stop_price == Decimal("60000")
    assert v1.cancel_order("BTCUSDT", order_id=22542180).status == "CANCELED"
    (open_order,) = v1.open_orders("BTCUSDT")
    assert open_order.is_open and open_order.close_position
    query = dict(sent_params(mocked.calls[0]))
    assert query["origClientOrderId"] == "sl-1"
    delete = mocked.calls[1].request
    assert delete.method == "DELETE" and "signature=" in delete.url  # DELETE params travel in the query
    with pytest.raises(AsterInputError, match="exactly one"):
        v1.query_order("BTCUSDT", order_id=1, client_order_id="x")


def test_signed_endpoint_without_credentials_is_an_input_error(public, mocked):
    with pytest.raises(AsterInputError, match="credentials"):
        public.balances()
    assert len(mocked.calls) == 0


# ----------------------------------------------------------------------------- signed: account


@pytest.mark.parametrize(
    ("client_name", "prefix_risk", "prefix"), [("v1", "/fapi/v2", "/fapi/v1"), ("v3", "/fapi/v3", "/fapi/v3")]
)
def test_account_endpoints_use_each_generations_paths(request, mocked, client_name, prefix_risk, prefix):
    client = request.getfixturevalue(client_name)
    mocked.get(f"{BASE}{prefix_risk}/positionRisk", json=P.POSITION_RISK)
    mocked.get(f"{BASE}{prefix_risk}/balance", json=P.BALANCE)
    mocked.get(f"{BASE}{prefix}/userTrades", json=P.USER_TRADES)
    mocked.post(f"{BASE}{prefix}/leverage", json={"leverage": 5, "maxNotionalValue": "250000", "symbol": "BTCUSDT"})
    mocked.get(f"{BASE}{prefix}/leverageBracket", json=P.LEVERAGE_BRACKET)

    (position,) = client.position_risk("BTCUSDT")
    assert (position.position_amt, position.unrealized_profit, position.max_notional) == (
        Decimal("0.01"),
        Decimal("0.995"),
        Decimal("250000"),
    )
    assert position.liquidation_price == Decimal("52216.3") and position.leverage == 5
    (balance,) = client.balances()
    assert balance.available_balance == Decimal("23.72469206")
    (trade,) = client.user_trades("BTCUSDT")
    assert (trade.realized_pnl, trade.commission) == (Decimal("-0.91539999"), Decimal("-0.0781901"))
    assert client.set_leverage("BTCUSDT", 5).max_notional == Decimal("250000")
    (brackets,) = client.leverage_brackets("ETHUSDT")
    assert [b.bracket for b in brackets.brackets] == [1, 2]
    assert brackets.for_notional(Decimal("20000")).initial_leverage == 50
    assert all(
        "signature=" in (c.request.body or c.request.url) for c in mocked.calls if "exchangeInfo" not in c.request.url
    )


def test_position_risk_tolerates_the_other_documented_spelling(v3, mocked):
    mocked.get(f"{BASE}/fapi/v3/positionRisk", json=P.POSITION_RISK_RUST_SDK_SHAPE)
    (position,) = v3.position_risk()
    assert (position.position_amt, position.unrealized_profit, position.max_notional) == (
        Decimal("-1.5"),
        Decimal("-3"),
        Decimal("100000"),
    )
    assert position.mark_price is None


def test_balance_tolerates_wallet_balance_spelling(v1, mocked):
    mocked.get(f"{BASE}/fapi/v2/balance", json=[{"asset": "USDT", "walletBalance": "10", "availableBalance": "9"}])
    assert v1.balances()[0].balance == Decimal("10")


def test_margin_type_and_position_mode_treat_no_change_as_success(v1, mocked):
    mocked.post(f"{BASE}/fapi/v1/marginType", status=400, json={"code": -4046, "msg": "No need to change margin type."})
    mocked.post(
        f"{BASE}/fapi/v1/positionSide/dual", status=400, json={"code": -4059, "msg": "No need to change position side."}
    )
    v1.set_margin_type("BTCUSDT", "ISOLATED")
    v1.set_position_mode(hedge=False)
    assert dict(sent_params(mocked.calls[-1]))["dualSidePosition"] == "false"


def test_margin_type_with_open_position_is_an_invalid_request(v1, mocked):
    mocked.post(
        f"{BASE}/fapi/v1/marginType",
        status=400,
        json={"code": -4048, "msg": "Margin type cannot be changed if there exists position."},
    )
    with pytest.raises(AsterInvalidRequest) as caught:
        v1.set_margin_type("BTCUSDT", "ISOLATED")
    assert caught.value.code == -4048


def test_leverage_bracket_list_reply(v1, mocked):
    mocked.get(
        f"{BASE}/fapi/v1/leverageBracket", json=[P.LEVERAGE_BRACKET, {**P.LEVERAGE_BRACKET, "symbol": "BTCUSDT"}]
    )
    assert [b.symbol for b in v1.leverage_brackets()] == ["ETHUSDT", "BTCUSDT"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-1022, "Signature for this request is not valid."),
        (-2019, "Margin is insufficient."),
        (-1111, "Precision is over the maximum defined for this asset."),
        (-4164, "Order's notional must be no smaller than 5.0 (unless you choose reduce only)"),
        (-2021, "Order would immediately trigger."),
    ],
)
def test_exchange_refusals_raise_invalid_request_with_the_code(v1, mocked, code, msg):
    mocked.post(f"{BASE}/fapi/v1/order", status=400, json={"code": code, "msg": msg})
    with pytest.raises(AsterInvalidRequest) as caught:
        v1.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="x-1")
    assert caught.value.code == code
    assert str(code) in str(caught.value) and msg in str(caught.value)
    assert len(order_calls(mocked)) == 1


def test_503_on_submission_is_unknown_outcome_and_sent_once(v1, mocked):
    mocked.post(
        f"{BASE}/fapi/v1/order",
        status=503,
        json={"code": -1007, "msg": "Timeout waiting for response from backend server."},
    )
    with pytest.raises(AsterOutcomeUnknown) as caught:
        v1.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="entry-7")
    assert caught.value.client_order_id == "entry-7"
    assert len(order_calls(mocked)) == 1


def test_minus_1007_with_a_4xx_status_is_still_unknown(v3, mocked):
    mocked.post(f"{BASE}/fapi/v3/order", status=408, json={"code": -1007, "msg": "Timeout"})
    with pytest.raises(AsterOutcomeUnknown):
        v3.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="entry-8")


@pytest.mark.parametrize("exc", [requests.ReadTimeout("read timed out"), requests.ConnectionError("reset")])
def test_transport_failure_on_submission_is_unknown_and_not_retried(v1, mocked, exc):
    mocked.post(f"{BASE}/fapi/v1/order", body=exc)
    with pytest.raises(AsterOutcomeUnknown):
        v1.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", client_order_id="entry-9")
    assert len(order_calls(mocked)) == 1


def test_idempotent_get_is_retried_with_backoff_then_succeeds(v1, mocked, fake_time):
    mocked.get(f"{BASE}/fapi/v2/positionRisk", body=requests.ConnectionError("reset"))
    mocked.get(f"{BASE}/fapi/v2/positionRisk", status=502, body="<html>bad gateway</html>")
    mocked.get(f"{BASE}/fapi/v2/positionRisk", json=P.POSITION_RISK)
    assert v1.position_risk()[0].symbol == "BTCUSDT"
    assert len(mocked.calls) == 3
    assert fake_time.sleeps == [0.2, 0.4]
    signatures = {dict(sent_params(c))["signature"] for c in mocked.calls}
    assert len(signatures) == 3  # re-signed with a fresh timestamp each time


def test_idempotent_get_gives_up_after_bounded_attempts(v1, mocked):
    mocked.get(f"{BASE}/fapi/v2/balance", status=500, json={"code": -1000, "msg": "unknown"})
    with pytest.raises(AsterTransportError):
        v1.balances()
    assert len(mocked.calls) == 3


def test_429_blocks_further_calls_until_retry_after(v1, mocked, fake_time):
    mocked.get(
        f"{BASE}/fapi/v2/balance",
        status=429,
        headers={"Retry-After": "30"},
        json={"code": -1003, "msg": "Too many requests."},
    )
    with pytest.raises(AsterRateLimited) as caught:
        v1.balances()
    assert caught.value.retry_at == pytest.approx(NOW + 30)
    calls = len(mocked.calls)
    with pytest.raises(AsterRateLimited):
        v1.balances()
    assert len(mocked.calls) == calls  # nothing sent while backing off
    fake_time.now += 31
    mocked.replace(responses.GET, f"{BASE}/fapi/v2/balance", json=P.BALANCE)
    assert v1.balances()


def test_418_ban_stops_calls_until_the_ban_ends(public, mocked, fake_time):
    mocked.get(
        f"{BASE}/fapi/v1/time",
        status=418,
        headers={"Retry-After": "120"},
        json={"code": -1003, "msg": "IP banned until 1"},
    )
    with pytest.raises(AsterRateLimited) as caught:
        public.server_time()
    assert caught.value.http_status == 418
    with pytest.raises(AsterRateLimited):
        public.server_time()
    assert len(mocked.calls) == 1


def test_418_ban_end_is_read_from_the_message(public, mocked, fake_time):
    ban_end_ms = int((NOW + 3600) * 1000)
    mocked.get(
        f"{BASE}/fapi/v1/time",
        status=418,
        json={"code": -1003, "msg": f"Way too many requests; IP banned until {ban_end_ms}."},
    )
    with pytest.raises(AsterRateLimited) as caught:
        public.server_time()
    assert caught.value.retry_at == pytest.approx(NOW + 3600)
    fake_time.now += 300  # past the default 120 s, still inside the ban
    with pytest.raises(AsterRateLimited):
        public.server_time()
    assert len(mocked.calls) == 1


def test_client_slows_down_before_the_weight_budget_runs_out(public, mocked, fake_time):
    fake_time.now = 1_700_000_038.0  # two seconds before the minute ends
    mocked.get(f"{BASE}/fapi/v1/time", json={"serverTime": 1}, headers={"X-MBX-USED-WEIGHT-1M": "2200"})
    public.server_time()
    public.server_time()  # would cross 90% of 2400: waits for the next minute
    assert fake_time.sleeps and fake_time.sleeps[0] == pytest.approx(2.0)


def test_client_refuses_rather_than_wait_long_when_the_budget_is_spent(public, mocked, fake_time):
    fake_time.now = 1_700_000_000.0  # 40 seconds before the minute ends
    mocked.get(f"{BASE}/fapi/v1/time", json={"serverTime": 1}, headers={"X-MBX-USED-WEIGHT-1M": "2200"})
    public.server_time()
    with pytest.raises(AsterRateLimited, match="budget"):
        public.server_time()
    assert len(mocked.calls) == 1


def test_code_below_zero_on_http_200_is_a_refusal(v1, mocked):
    mocked.get(
        f"{BASE}/fapi/v2/balance", json={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    )
    with pytest.raises(AsterInvalidRequest) as caught:
        v1.balances()
    assert caught.value.code == -2015


def test_unparseable_reply_is_a_response_error(v1, mocked):
    mocked.get(f"{BASE}/fapi/v2/positionRisk", json=[{"symbol": "BTCUSDT", "positionAmt": "abc"}])
    with pytest.raises(AsterResponseError):
        v1.position_risk()


# ----------------------------------------------------------------------------- bad input, nothing sent


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quantity": Decimal("0")}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": 0.01}, "quantity"),
        ({"quantity": Decimal("0.0004")}, "quantity"),  # rounds to 0 with step 0.001
        ({"quantity": "121"}, "quantity"),  # above MARKET_LOT_SIZE maxQty
        ({"symbol": "NOPEUSDT"}, "symbol"),
        ({"symbol": "OLDUSDT"}, "symbol"),
        ({"side": "HOLD"}, "side"),
        ({"type": "STOP_MARKET", "stop_price": "not-a-number"}, "stop_price"),
        ({"type": "STOP_MARKET", "stop_price": "NaN"}, "stop_price"),
        ({"client_order_id": "x" * 37}, "client_order_id"),
        ({"client_order_id": "bad id!"}, "client_order_id"),
        ({"client_order_id": ""}, "client_order_id"),
        ({"type": "STOP_MARKET", "stop_price": "60000", "close_position": True}, "close_position"),
        ({"working_type": "INDEX_PRICE"}, "working_type"),
    ],
)
def test_bad_order_input_is_refused_before_any_order_request(v1, mocked, kwargs, field):
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.01",
        "client_order_id": "ok-1",
        **kwargs,
    }
    with pytest.raises(AsterInputError) as caught:
        v1.new_order(**order)
    assert caught.value.field == field
    assert order_calls(mocked) == []


def test_bad_price_input_is_refused_before_the_symbol_lookup(v1, mocked):
    with pytest.raises(AsterInputError):
        v1.new_order(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stop_price="x", close_position=True)
    assert len(mocked.calls) == 0


# ---- issue 13: the client reads what matters (position side, notional, isolated wallet, origType, modes)

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
