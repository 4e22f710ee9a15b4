"""Live execution against `responses`: the exact calls, and every failure branch."""

import json
import re
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from execution.exceptions import ExchangeRejected, OrderOutcomeUnknown, ProtectionFailed
from execution.models import ExecutionEvent, PendingOrder, Position, Trade
from execution.services import ExecutionService
from tests import aster_payloads as P
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory
from tests.market import BASE, FakeMarket

pytestmark = pytest.mark.django_db


class FakeLiveVenue:
    """Signed endpoints of one account; orders answered from a script of replies."""

    def __init__(self, rsps: responses.RequestsMock, prefix: str = "/fapi/v1", risk_prefix: str = "/fapi/v2") -> None:
        self.rsps = rsps
        self.market = FakeMarket(rsps)
        self.order_replies: list = []  # per POST /order: "fill", "new", or (status, body)
        self.next_id = 7000
        self.known: dict[str, dict] = {}
        rsps.get(f"{BASE}{risk_prefix}/balance", json=[{**P.BALANCE[0], "availableBalance": "100000"}])
        rsps.get(
            re.compile(re.escape(f"{BASE}{prefix}/leverageBracket") + r".*"),
            json={**P.LEVERAGE_BRACKET, "symbol": "BTCUSDT"},
        )
        rsps.get(f"{BASE}{prefix}/positionSide/dual", json={"dualSidePosition": False})
        rsps.get(f"{BASE}{prefix}/multiAssetsMargin", json={"multiAssetsMargin": False})
        rsps.post(f"{BASE}{prefix}/positionSide/dual", json={"code": 200, "msg": "success"})
        rsps.post(f"{BASE}{prefix}/marginType", json={"code": 200, "msg": "success"})
        rsps.post(f"{BASE}{prefix}/leverage", json={"leverage": 5, "maxNotionalValue": "250000", "symbol": "BTCUSDT"})
        rsps.add_callback(responses.POST, f"{BASE}{prefix}/order", callback=self._new_order)
        rsps.add_callback(responses.GET, re.compile(re.escape(f"{BASE}{prefix}/order") + r"\?.*"), callback=self._query)
        rsps.add_callback(
            responses.DELETE, re.compile(re.escape(f"{BASE}{prefix}/order") + r"\?.*"), callback=self._cancel
        )
        rsps.add_callback(
            responses.GET, re.compile(re.escape(f"{BASE}{prefix}/userTrades") + r".*"), callback=self._trades
        )

    def _new_order(self, request):
        params = dict(parse_qsl(request.body))
        reply = self.order_replies.pop(0) if self.order_replies else ("fill" if params["type"] == "MARKET" else "new")
        if isinstance(reply, tuple):
            return reply[0], {}, json.dumps(reply[1])
        self.next_id += 1
        body = self._order_body(params, filled=reply in ("fill", "fill-then-503"))
        self.known[params["newClientOrderId"]] = body
        if reply == "fill-then-503":
            return 503, {}, json.dumps({"code": -1007, "msg": "Timeout waiting for response from backend server."})
        return 200, {}, json.dumps(body)

    def _order_body(self, params, *, filled):
        quantity = params.get("quantity", "0")
        return {
            **P.ORDER_FILLED,
            "orderId": self.next_id,
            "clientOrderId": params["newClientOrderId"],
            "symbol": params["symbol"],
            "side": params["side"],
            "type": params["type"],
            "origQty": quantity,
            "executedQty": quantity if filled else "0",
            "cumQuote": str(Decimal(quantity) * Decimal("65000.5")) if filled else "0",
            "avgPrice": "65000.5" if filled else "0",
            "status": "FILLED" if filled else "NEW",
            "stopPrice": params.get("stopPrice", "0"),
            "closePosition": params.get("closePosition") == "true",
            "updateTime": 1700000000000,
        }

    def _query(self, request):
        params = dict(parse_qsl(urlsplit(request.url).query))
        body = self.known.get(params.get("origClientOrderId", ""))
        if body is None:
            return 400, {}, json.dumps({"code": -2013, "msg": "Order does not exist."})
        return 200, {}, json.dumps(body)

    def _cancel(self, request):
        params = dict(parse_qsl(urlsplit(request.url).query))
        body = self.known.get(params.get("origClientOrderId", ""))
        if body is None:
            return 400, {}, json.dumps({"code": -2011, "msg": "Unknown order sent."})
        body["status"] = "CANCELED"
        return 200, {}, json.dumps(body)

    def _trades(self, request):
        rows = [
            {
                **P.USER_TRADES[0],
                "orderId": body["orderId"],
                "commission": "0.2275",
                "price": "65000.5",
                "qty": body["executedQty"],
                "side": body["side"],
            }
            for body in self.known.values()
            if body["status"] == "FILLED"
        ]
        return 200, {}, json.dumps(rows)

    def calls(self):
        return [(c.request.method, urlsplit(c.request.url).path) for c in self.rsps.calls]

    def order_posts(self):
        return [
            dict(parse_qsl(c.request.body))
            for c in self.rsps.calls
            if c.request.method == "POST" and urlsplit(c.request.url).path.endswith("/order")
        ]


@pytest.fixture
def venue():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeLiveVenue(rsps)


def no_sleep(seconds: float) -> None:
    return None


def service(account):
    return ExecutionService(account, sleep=no_sleep)


def test_live_market_order_with_tp_sl_makes_exactly_these_calls(venue, settings):
    settings.PARITY_ENABLED = False  # parity's book read is one GET more, beside the order (tests/test_parity.py)
    account = LiveV1AccountFactory()
    result = service(account).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
    )
    assert venue.calls() == [
        ("GET", "/fapi/v1/exchangeInfo"),
        ("GET", "/fapi/v1/premiumIndex"),
        ("GET", "/fapi/v1/positionSide/dual"),
        ("GET", "/fapi/v1/multiAssetsMargin"),
        ("GET", "/fapi/v2/balance"),
        ("GET", "/fapi/v1/leverageBracket"),
        ("POST", "/fapi/v1/marginType"),
        ("POST", "/fapi/v1/leverage"),
        ("POST", "/fapi/v1/order"),
        ("GET", "/fapi/v1/userTrades"),
        ("POST", "/fapi/v1/order"),
        ("POST", "/fapi/v1/order"),
    ]
    market, stop, take_profit = venue.order_posts()  # the stop first: a refused TP must not cost it
    assert list(market) == [
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
    assert (market["type"], market["quantity"], market["newOrderRespType"]) == ("MARKET", "0.01", "RESULT")
    assert market["newClientOrderId"] == result.trade.client_order_id and len(market["signature"]) == 64
    assert list(stop) == [
        "symbol",
        "side",
        "type",
        "newClientOrderId",
        "stopPrice",
        "closePosition",
        "workingType",
        "newOrderRespType",
        "recvWindow",
        "timestamp",
        "signature",
    ]
    assert (stop["side"], stop["type"], stop["stopPrice"], stop["closePosition"], stop["workingType"]) == (
        "SELL",
        "STOP_MARKET",
        "60000",
        "true",
        "MARK_PRICE",
    )
    assert (take_profit["type"], take_profit["stopPrice"]) == ("TAKE_PROFIT_MARKET", "70000")
    trade = result.trade
    assert (trade.status, trade.price, trade.quantity, trade.fee) == (
        "filled",
        Decimal("65000.5"),
        Decimal("0.01"),
        Decimal("0.2275"),
    )
    assert trade.exchange_order_id == "7001"
    legs = {p.kind: p for p in PendingOrder.objects.all()}
    assert legs["stop_loss"].exchange_order_id == "7002" and legs["take_profit"].exchange_order_id == "7003"
    assert legs["stop_loss"].sibling_id == legs["take_profit"].pk
    assert result.position.side == "LONG" and result.position.quantity == Decimal("0.01")


def test_account_setup_is_done_once(venue):
    account = LiveV1AccountFactory()
    svc = service(account)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    calls = venue.calls()
    for call in (
        ("GET", "/fapi/v1/positionSide/dual"),
        ("GET", "/fapi/v1/multiAssetsMargin"),
        ("POST", "/fapi/v1/marginType"),
        ("POST", "/fapi/v1/leverage"),
        ("GET", "/fapi/v1/leverageBracket"),
    ):
        assert calls.count(call) == 1
    assert ("POST", "/fapi/v1/positionSide/dual") not in calls  # already one-way: nothing to switch


def test_v3_account_uses_v3_paths(venue):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        v3 = FakeLiveVenue(rsps, prefix="/fapi/v3", risk_prefix="/fapi/v3")
        service(LiveV3AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
        (market,) = v3.order_posts()
        assert {"nonce", "user", "signer", "signature"} <= set(market)
        assert ("POST", "/fapi/v3/order") in v3.calls()


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-2019, "Margin is insufficient."),
        (-1111, "Precision is over the maximum defined for this asset."),
        (-4164, "Order's notional must be no smaller than 5.0 (unless you choose reduce only)"),
    ],
)
def test_exchange_refusal_rejects_the_intent_and_sends_no_protection(venue, code, msg):
    venue.order_replies = [(400, {"code": code, "msg": msg})]
    with pytest.raises(ExchangeRejected) as caught:
        service(LiveV1AccountFactory()).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, stop_loss="60000"
        )
    assert caught.value.code == f"EXCHANGE_{code}"
    trade = Trade.objects.get()
    assert trade.status == "rejected" and trade.error_code == f"EXCHANGE_{code}" and msg in trade.error_message
    assert not Position.objects.exists() and not PendingOrder.objects.exists()
    assert len(venue.order_posts()) == 1


def test_rate_limited_submission_is_rejected_not_unknown(venue):
    venue.order_replies = [(429, {"code": -1003, "msg": "Too many requests."})]
    with pytest.raises(ExchangeRejected) as caught:
        service(LiveV1AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "RATE_LIMITED"
    assert Trade.objects.get().status == "rejected"


def test_503_after_accept_is_resolved_by_client_id_without_a_second_order(venue):
    venue.order_replies = ["fill-then-503"]
    result = service(LiveV1AccountFactory()).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )
    assert result.trade.status == "filled" and result.position.quantity == Decimal("0.01")
    assert len(venue.order_posts()) == 1  # exactly one order reached the exchange
    assert ("GET", "/fapi/v1/order") in venue.calls()
    kinds = list(ExecutionEvent.objects.filter(subject_type="trade").order_by("id").values_list("kind", flat=True))
    assert kinds == ["trade.submitting", "trade.unknown", "trade.filled"]


def test_unresolvable_submission_stays_unknown_and_is_never_resent(venue):
    venue.order_replies = [(503, {"code": -1007, "msg": "Timeout waiting for response from backend server."})]
    with pytest.raises(OrderOutcomeUnknown):
        service(LiveV1AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert Trade.objects.get().status == "unknown"
    assert len(venue.order_posts()) == 1
    assert venue.calls().count(("GET", "/fapi/v1/order")) == 4  # bounded queries by client id


def test_stop_refused_with_minus_2021_closes_the_position_at_market(venue):
    venue.order_replies = ["fill", "new", (400, {"code": -2021, "msg": "Order would immediately trigger."})]
    account = LiveV1AccountFactory()
    with pytest.raises(ProtectionFailed) as caught:
        service(account).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000", stop_loss="60000"
        )
    assert caught.value.details["exchange_code"] == -2021
    assert ("DELETE", "/fapi/v1/order") in venue.calls()  # the placed take-profit is cancelled
    _, _, _, close = venue.order_posts()
    assert (close["type"], close["side"], close["reduceOnly"]) == ("MARKET", "SELL", "true")
    assert Trade.objects.get(reason="protection_failure").status == "filled"
    assert Position.objects.get().status == "closed"
    event = ExecutionEvent.objects.get(kind="position.protection_failed")
    assert event.data["action"] == "closed at market"


def test_stop_refused_keeps_the_position_when_the_account_says_so(venue):
    venue.order_replies = ["fill", (400, {"code": -2021, "msg": "Order would immediately trigger."})]
    account = LiveV1AccountFactory(keep_unprotected_positions=True)
    with pytest.raises(ProtectionFailed):
        service(account).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, take_profit="70000"
        )
    position = Position.objects.get()
    assert position.status == "open" and position.needs_protection
    assert ExecutionEvent.objects.get(kind="position.protection_failed").data["action"].startswith("kept")
    assert PendingOrder.objects.get().status == "failed"


def test_same_decision_delivered_twice_sends_one_order(venue):
    svc = service(LiveV1AccountFactory())
    first = svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, idempotency_key="dec-9")
    second = svc.execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5, idempotency_key="dec-9"
    )
    assert second.replayed and second.trade.pk == first.trade.pk
    assert len(venue.order_posts()) == 1


def test_live_margin_check_uses_the_exchange_balance(venue):
    venue.rsps.replace(responses.GET, f"{BASE}/fapi/v2/balance", json=[{**P.BALANCE[0], "availableBalance": "10"}])
    from execution.exceptions import RiskCheckFailed

    with pytest.raises(RiskCheckFailed) as caught:
        service(LiveV1AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "INSUFFICIENT_MARGIN"
    assert venue.order_posts() == []


def test_bracket_maximum_leverage_is_enforced(venue):
    # ETH-style brackets of the fake: 75x up to 10,000, 50x above: 20x is fine, but the account
    # cap is 25x and the symbol's bracket at this notional allows it: now a small bracket table.
    venue.rsps.replace(
        responses.GET,
        re.compile(re.escape(f"{BASE}/fapi/v1/leverageBracket") + r".*"),
        json={
            "symbol": "BTCUSDT",
            "brackets": [
                {
                    "bracket": 1,
                    "initialLeverage": 10,
                    "notionalCap": 1e9,
                    "notionalFloor": 0,
                    "maintMarginRatio": 0.01,
                    "cum": 0,
                }
            ],
        },
    )
    from execution.exceptions import RiskCheckFailed

    with pytest.raises(RiskCheckFailed) as caught:
        service(LiveV1AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=20)
    assert caught.value.code == "LEVERAGE_TOO_HIGH" and "bracket" in caught.value.message


def test_margin_type_blocked_by_an_open_position_does_not_block_trading(venue):
    venue.rsps.replace(
        responses.POST,
        f"{BASE}/fapi/v1/marginType",
        status=400,
        json={"code": -4048, "msg": "Margin type cannot be changed if there exists position."},
    )
    result = service(LiveV1AccountFactory()).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5
    )
    assert result.trade.status == "filled"


def test_other_set_up_refusals_reject_the_order(venue):
    venue.rsps.replace(
        responses.POST, f"{BASE}/fapi/v1/leverage", status=400, json={"code": -4028, "msg": "Leverage 5 is not valid"}
    )
    with pytest.raises(ExchangeRejected) as caught:
        service(LiveV1AccountFactory()).execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    assert caught.value.code == "EXCHANGE_-4028"
    assert Trade.objects.get().status == "rejected" and venue.order_posts() == []


def test_the_safety_close_after_a_protection_failure_passes_a_halt(venue):
    from accounts.services import set_trading_state
    from execution.services.orders import ExecutionService as Service

    account = LiveV1AccountFactory()
    svc = Service(account, sleep=no_sleep)
    svc.execute_market_order(symbol="BTCUSDT", side="BUY", quantity="0.01", leverage=5)
    set_trading_state(account=account, state="halted")
    from execution.exceptions import RiskCheckFailed

    with pytest.raises(RiskCheckFailed):
        svc.close_position("BTCUSDT")  # an ordinary close is still refused while halted
    closed = svc.close_position("BTCUSDT", reason="protection_failure")
    assert closed.position.status == "closed"
