"""Account, position and configuration endpoints (ASTER_API.md §4, ASTER_WS.md §3), V1 and V3."""

import pytest

from tests.conformance.conftest import assert_shape

pytestmark = pytest.mark.usefixtures("flat")

RISK_STRINGS = ("symbol", "marginType", "isAutoAddMargin", "positionSide")
RISK_DECIMALS = (
    "entryPrice", "isolatedMargin", "leverage", "liquidationPrice", "markPrice", "maxNotionalValue",
    "positionAmt", "unRealizedProfit",
)  # fmt: skip


def buy(venue, version, quantity="0.01", **extra):
    return venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity=quantity, **extra
    )


def test_position_risk_shape(venue, version):
    buy(venue, version)
    rows = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
    (row,) = rows  # one-way mode: one BOTH row
    assert_shape(row, strings=RISK_STRINGS, decimals=RISK_DECIMALS, ints=("updateTime",))
    assert row["positionSide"] == "BOTH" and row["isAutoAddMargin"] in ("true", "false")  # a string (§4)
    assert row["marginType"] in ("isolated", "cross")  # lowercase (§4)
    assert float(row["positionAmt"]) == 0.01 and row["updateTime"] > 0
    every = venue.signed(version, "GET", "positionRisk").body
    assert {"BTCUSDT", "ETHUSDT"} <= {r["symbol"] for r in every}


@pytest.mark.assumption
def test_position_risk_extra_fields_seen_by_ccxt(venue, version):
    """ASSUMPTION: `notional` and `isolatedWallet` as ccxt recorded them on mainnet (§4)."""
    buy(venue, version)
    (row,) = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
    assert_shape(row, decimals=("notional", "isolatedWallet"))


def test_cross_positions_have_no_isolated_margin(venue, version):
    buy(venue, version)
    (row,) = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
    assert row["marginType"] == "cross" and float(row["isolatedMargin"]) == 0


def test_isolated_margin_and_position_margin(venue, version):
    margin = venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert margin.body == {"code": 200, "msg": "success"}
    again = venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert again.code == -4046  # no need to change (§4: treat as OK)
    buy(venue, version)
    (before,) = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
    assert before["marginType"] == "isolated" and float(before["isolatedMargin"]) > 0
    assert venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="CROSSED").code == -4048
    added = venue.signed(version, "POST", "positionMargin", symbol="BTCUSDT", amount="10", type=1)
    assert added.status == 200 and added.body["code"] == 200 and added.body["type"] == 1
    assert isinstance(added.body["amount"], int | float)  # a number (§4)
    (after,) = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
    assert float(after["isolatedMargin"]) == pytest.approx(float(before["isolatedMargin"]) + 10, abs=1)
    assert float(after["liquidationPrice"]) < float(before["liquidationPrice"])
    reduced = venue.signed(version, "POST", "positionMargin", symbol="BTCUSDT", amount="5", type=2)
    assert reduced.status == 200 and reduced.body["type"] == 2


def test_position_margin_needs_an_isolated_position(venue, version):
    reply = venue.signed(version, "POST", "positionMargin", symbol="BTCUSDT", amount="10", type=1)
    assert reply.status == 400 and reply.code in (-4049, -4054)  # cross / no position (ASTER_WS.md §3.4)


def test_margin_type_values(venue, version):
    assert venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="CROSS").status == 400


def test_margin_type_with_open_orders_is_refused(venue, version):
    venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="60000"
    )  # fmt: skip
    assert venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="ISOLATED").code == -4047


def test_balance_shape(venue, version):
    (usdt,) = [b for b in venue.signed(version, "GET", "balance").body if b["asset"] == "USDT"]
    assert_shape(
        usdt,
        strings=("accountAlias", "asset"),
        decimals=("balance", "crossWalletBalance", "crossUnPnl", "availableBalance", "maxWithdrawAmount"),
        bools=("marginAvailable",),
        ints=("updateTime",),
    )


def test_user_trades_shape(venue, version):
    buy(venue, version)
    rows = venue.signed(version, "GET", "userTrades", symbol="BTCUSDT", limit=5).body
    assert rows
    assert_shape(
        rows[-1],
        strings=("commissionAsset", "side", "positionSide", "symbol"),
        decimals=("commission", "price", "qty", "quoteQty", "realizedPnl"),
        ints=("id", "orderId", "time"),
        bools=("buyer", "maker"),
    )
    assert venue.signed(version, "GET", "userTrades").code == -1102  # symbol is mandatory


def test_leverage_and_max_notional_follow_the_brackets(venue, version):
    caps = {}
    for leverage in (125, 20, 5):
        reply = venue.signed(version, "POST", "leverage", symbol="BTCUSDT", leverage=leverage).body
        assert_shape(reply, strings=("symbol",), decimals=("maxNotionalValue",), ints=("leverage",))
        (row,) = venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body
        assert row["maxNotionalValue"] == reply["maxNotionalValue"] and row["leverage"] == str(leverage)
        caps[leverage] = float(reply["maxNotionalValue"])
    assert caps[125] < caps[20] < caps[5]  # lower leverage, larger position allowed (§5)
    assert venue.signed(version, "POST", "leverage", symbol="BTCUSDT", leverage=126).code == -4028
    assert venue.signed(version, "POST", "leverage", symbol="BTCUSDT", leverage=0).code == -4028


def test_leverage_brackets_are_numbers(venue, version):
    one = venue.signed(version, "GET", "leverageBracket", symbol="BTCUSDT").body
    assert one["symbol"] == "BTCUSDT"
    for bracket in one["brackets"]:
        assert_shape(
            bracket,
            ints=("bracket", "initialLeverage"),
            numbers=("notionalCap", "notionalFloor", "maintMarginRatio", "cum"),
        )
    assert isinstance(venue.signed(version, "GET", "leverageBracket").body, list)  # without symbol: an array


def test_commission_rate_and_income(venue, version):
    rate = venue.signed(version, "GET", "commissionRate", symbol="BTCUSDT").body
    assert_shape(rate, strings=("symbol",), decimals=("makerCommissionRate", "takerCommissionRate"))
    buy(venue, version)
    rows = venue.signed(version, "GET", "income", incomeType="COMMISSION", limit=5).body
    assert rows and rows[-1]["incomeType"] == "COMMISSION"
    assert_shape(rows[-1], strings=("symbol", "incomeType", "asset", "info"), decimals=("income",), ints=("time",))


# ---------------------------------------------------------------- position mode (ASTER_WS.md §3.1)


def test_position_mode_query_and_change(venue, version):
    assert venue.signed(version, "GET", "positionSide/dual").body == {"dualSidePosition": False}  # a boolean
    assert venue.signed(version, "POST", "positionSide/dual", dualSidePosition="false").code == -4059
    changed = venue.signed(version, "POST", "positionSide/dual", dualSidePosition="true")
    assert changed.body == {"code": 200, "msg": "success"}
    assert venue.signed(version, "GET", "positionSide/dual").body == {"dualSidePosition": True}


def test_position_mode_cannot_change_with_open_orders_or_positions(venue, version):
    venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="60000"
    )  # fmt: skip
    assert venue.signed(version, "POST", "positionSide/dual", dualSidePosition="true").code == -4067
    venue.signed(version, "DELETE", "allOpenOrders", symbol="BTCUSDT")
    buy(venue, version)
    assert venue.signed(version, "POST", "positionSide/dual", dualSidePosition="true").code == -4068


def test_hedge_mode_orders_need_a_position_side_and_report_long_and_short_rows(venue, version):
    venue.signed(version, "POST", "positionSide/dual", dualSidePosition="true")
    assert buy(venue, version).code == -4061  # positionSide missing (BOTH) in hedge mode
    assert buy(venue, version, positionSide="LONG", reduceOnly="false").code == -4062  # reduceOnly not allowed
    assert buy(venue, version, positionSide="LEFT").code == -4060
    long = buy(venue, version, positionSide="LONG").body
    assert long["positionSide"] == "LONG" and long["status"] == "FILLED"
    short = venue.signed(
        version, "POST", "order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.02", positionSide="SHORT"
    ).body
    assert short["positionSide"] == "SHORT"
    rows = {r["positionSide"]: r for r in venue.signed(version, "GET", "positionRisk", symbol="BTCUSDT").body}
    assert set(rows) == {"LONG", "SHORT"}  # §4: hedge mode returns LONG and SHORT rows
    assert float(rows["LONG"]["positionAmt"]) == 0.01 and float(rows["SHORT"]["positionAmt"]) == -0.02


@pytest.mark.parametrize("value", ["TRUE", "1", ""])
def test_mode_booleans_are_true_or_false_only(venue, version, value):
    reply = venue.signed(version, "POST", "positionSide/dual", dualSidePosition=value)
    assert reply.status == 400 and reply.code in (-1102, -1130)


# ---------------------------------------------------------------- multi-assets mode (ASTER_WS.md §3.2)


def test_multi_assets_mode_query_and_change(venue, version):
    assert venue.signed(version, "GET", "multiAssetsMargin").body == {"multiAssetsMargin": False}
    assert venue.signed(version, "POST", "multiAssetsMargin", multiAssetsMargin="true").body["code"] == 200
    assert venue.signed(version, "GET", "multiAssetsMargin").body == {"multiAssetsMargin": True}


@pytest.mark.assumption
def test_isolated_margin_under_multi_assets_mode_is_refused(venue, version):
    """ASSUMPTION: Binance's -4168 (ccxt saw it on Aster; the Aster docs list no such code, §3.2)."""
    venue.signed(version, "POST", "multiAssetsMargin", multiAssetsMargin="true")
    reply = venue.signed(version, "POST", "marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert reply.status == 400 and reply.code == -4168 and reply.body["msg"]
