"""The simulated exchange's semantics that real clients depend on (issue 13 item 3), checked on
the exchange object directly (fast); the HTTP shapes are the conformance suite's (tests/conformance)."""

from decimal import Decimal
from types import SimpleNamespace

import pytest

from execution.aster.simulator.exchange import SimError, SimExchange


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def exchange(clock):
    return SimExchange(seed=1, clock=clock)


@pytest.fixture
def account(exchange):
    return exchange.add_account("a", balance=Decimal("100000"))


def order(exchange, account, **params):
    return exchange.place_order(account, {k: str(v) for k, v in params.items()})


def refused(exchange, account, **params) -> int:
    with pytest.raises(SimError) as caught:
        order(exchange, account, **params)
    return caught.value.code


MARKET_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}


# ---------------------------------------------------------------- hedge mode


def test_position_side_must_match_the_mode(exchange, account):
    assert refused(exchange, account, **MARKET_BUY, positionSide="LONG") == -4061  # one-way
    assert refused(exchange, account, **MARKET_BUY, positionSide="UP") == -4060
    account.hedge_mode = True
    assert refused(exchange, account, **MARKET_BUY) == -4061  # hedge: LONG or SHORT is required
    assert refused(exchange, account, **MARKET_BUY, positionSide="BOTH") == -4061
    assert refused(exchange, account, **MARKET_BUY, positionSide="LONG", reduceOnly="true") == -4062


def test_hedge_mode_keeps_a_long_and_a_short_apart(exchange, account):
    account.hedge_mode = True
    order(exchange, account, **MARKET_BUY, positionSide="LONG")
    order(exchange, account, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.02", positionSide="SHORT")
    rows = {r["positionSide"]: r for r in exchange.position_risk(account, "BTCUSDT")}
    assert set(rows) == {"LONG", "SHORT"}
    assert (rows["LONG"]["positionAmt"], rows["SHORT"]["positionAmt"]) == ("0.01", "-0.02")
    # Closing is the opposite side on the same positionSide, never more than is held.
    too_much = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.02", "positionSide": "LONG"}
    assert refused(exchange, account, **too_much) == -2022
    closed = order(exchange, account, **{**too_much, "quantity": "0.01"})
    assert closed.status == "FILLED" and closed.as_json()["positionSide"] == "LONG"
    rows = {r["positionSide"]: r for r in exchange.position_risk(account, "BTCUSDT")}
    assert (rows["LONG"]["positionAmt"], rows["SHORT"]["positionAmt"]) == ("0", "-0.02")
    assert account.trades[-1]["positionSide"] == "LONG"


def test_close_position_on_the_wrong_hedge_side_is_refused(exchange, account):
    account.hedge_mode = True
    stop = {"symbol": "BTCUSDT", "type": "STOP_MARKET", "stopPrice": "60000", "closePosition": "true"}
    assert refused(exchange, account, **stop, side="BUY", positionSide="LONG") == -4061


# ---------------------------------------------------------------- margin


def test_cross_liquidation_price_comes_from_the_cross_wallet(exchange, account):
    order(exchange, account, **{**MARKET_BUY, "quantity": "1"})
    (row,) = exchange.position_risk(account, "BTCUSDT")
    assert row["marginType"] == "cross" and row["isolatedMargin"] == "0" and row["isolatedWallet"] == "0"
    assert row["liquidationPrice"] == "0"  # 100,000 USDT stands behind 1 BTC: no liquidation price
    account.balance = Decimal("10000")
    (row,) = exchange.position_risk(account, "BTCUSDT")
    entry, wallet = Decimal(row["entryPrice"]), account.balance
    # §6: (WB + cum - Q*EP) / (Q*MMR - Q), Q = 1; a 65,000 notional is in bracket 2 (MMR 0.005, cum 50)
    expected = (wallet + 50 - entry) / (Decimal("0.005") - 1)
    assert Decimal(row["liquidationPrice"]) == expected.quantize(Decimal("0.01"))


def test_isolated_rows_report_wallet_and_margin_apart(exchange, account):
    exchange.accounts["a"].margin_type["BTCUSDT"] = "ISOLATED"
    account.leverage["BTCUSDT"] = 10
    order(exchange, account, **MARKET_BUY)
    (row,) = exchange.position_risk(account, "BTCUSDT")
    wallet = Decimal(row["entryPrice"]) * Decimal("0.01") / 10
    assert Decimal(row["isolatedWallet"]) == wallet
    assert Decimal(row["isolatedMargin"]) == wallet + Decimal(row["unRealizedProfit"])
    exchange.adjust_margin(account, symbol="BTCUSDT", side="BOTH", amount=Decimal("50"), add=True)
    (after,) = exchange.position_risk(account, "BTCUSDT")
    assert Decimal(after["isolatedWallet"]) == wallet + 50
    assert Decimal(after["liquidationPrice"]) < Decimal(row["liquidationPrice"])


def test_max_notional_follows_leverage_and_brackets(exchange, account):
    for leverage, cap in ((125, "50000"), (100, "250000"), (20, "10000000"), (1, "500000000")):
        account.leverage["BTCUSDT"] = leverage
        assert exchange.position_risk(account, "BTCUSDT")[0]["maxNotionalValue"] == cap


def test_update_time_is_the_last_change(exchange, account, clock):
    assert exchange.position_risk(account, "BTCUSDT")[0]["updateTime"] == 0
    order(exchange, account, **MARKET_BUY)
    filled_at = exchange.now_ms()
    clock.now += 30
    assert exchange.position_risk(account, "BTCUSDT")[0]["updateTime"] == filled_at


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(("name", "value"), [("reduceOnly", "True"), ("reduceOnly", "1"), ("closePosition", "yes")])
def test_booleans_are_true_or_false_only(exchange, account, name, value):
    order(exchange, account, **MARKET_BUY)
    close = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01", name: value}
    assert refused(exchange, account, **close) == -1130


# ---------------------------------------------------------------- order types and matching


def test_a_resting_limit_fills_at_its_price_as_a_maker_when_the_price_crosses(exchange, account):
    resting = order(
        exchange, account, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.01", price="64000", timeInForce="GTC"
    )
    assert resting.status == "NEW"
    exchange.set_price("BTCUSDT", Decimal("64100"))
    assert resting.status == "NEW"
    exchange.set_price("BTCUSDT", Decimal("63990"))
    assert resting.status == "FILLED" and resting.avg_price == Decimal("64000")
    assert account.trades[-1]["maker"] is True and account.positions["BTCUSDT"].amount == Decimal("0.01")


def test_limit_time_in_force(exchange, account):
    away = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "64000"}
    assert order(exchange, account, **away, timeInForce="IOC").status == "EXPIRED"
    crossing = {**away, "price": "66000"}
    assert order(exchange, account, **crossing, timeInForce="GTX").status == "EXPIRED"  # post-only would take
    taken = order(exchange, account, **crossing, timeInForce="GTC")
    assert taken.status == "FILLED" and taken.avg_price <= Decimal("66000")


def test_a_stop_limit_becomes_a_limit_order_when_triggered(exchange, account):
    stop = order(
        exchange,
        account,
        symbol="BTCUSDT",
        side="BUY",
        type="STOP",
        quantity="0.01",
        price="65990",
        stopPrice="66000",
        timeInForce="GTC",
    )
    assert (stop.as_json()["type"], stop.status) == ("STOP", "NEW")
    exchange.set_price("BTCUSDT", Decimal("66000"))  # triggered; its limit 65990 is below the ask: it rests
    assert stop.triggered and stop.status == "NEW"
    assert (stop.as_json()["type"], stop.as_json()["origType"]) == ("LIMIT", "STOP")
    exchange.set_price("BTCUSDT", Decimal("65980"))
    assert stop.status == "FILLED" and stop.avg_price == Decimal("65990")


def test_take_profit_limit_triggers_on_the_other_side(exchange, account):
    order(exchange, account, **MARKET_BUY)
    take = order(
        exchange,
        account,
        symbol="BTCUSDT",
        side="SELL",
        type="TAKE_PROFIT",
        quantity="0.01",
        price="67000",
        stopPrice="67000",
        reduceOnly="true",
    )
    exchange.set_price("BTCUSDT", Decimal("67010"))
    assert take.status == "FILLED" and account.positions["BTCUSDT"].amount == 0


def test_a_triggered_stop_market_reports_market_with_its_original_type(exchange, account):
    order(exchange, account, **MARKET_BUY)
    stop = order(
        exchange,
        account,
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stopPrice="64000",
        closePosition="true",
    )
    exchange.set_price("BTCUSDT", Decimal("63950"))
    reply = stop.as_json()
    assert (reply["status"], reply["type"], reply["origType"]) == ("FILLED", "MARKET", "STOP_MARKET")


# ---------------------------------------------------------------- per-symbol details


def test_funding_interval_is_per_symbol(exchange):
    aster, btc = exchange.funding_info(exchange.symbol("ASTERUSDT")), exchange.funding_info(exchange.symbol("BTCUSDT"))
    assert (aster["fundingIntervalHours"], btc["fundingIntervalHours"]) == (4, 8)
    assert exchange.premium_index(exchange.symbol("ASTERUSDT"))["nextFundingTime"] % (4 * 3_600_000) == 0
    history = exchange.funding_history(exchange.symbol("ASTERUSDT"), None, None, 3)
    assert history[1]["fundingTime"] - history[0]["fundingTime"] == 4 * 3_600_000


def test_klines_aggregate_minutes_into_longer_intervals(exchange, clock):
    for minute, price in enumerate(("65000", "65500", "64800", "65100")):
        clock.now = 1_700_006_400.0 + minute * 60  # 1_700_006_400 s is on an hour boundary
        exchange.set_price("BTCUSDT", Decimal(price))
    (hour,) = exchange.klines(exchange.symbol("BTCUSDT"), 1_700_006_400_000, None, 10, interval_ms=3_600_000)
    assert hour[0] == 1_700_006_400_000 and hour[6] == hour[0] + 3_600_000 - 1
    assert hour[1:5] == ["65000", "65500", "64800", "65100"]
    assert len(exchange.klines(exchange.symbol("BTCUSDT"), None, None, 10, interval_ms=60_000)) >= 4


def test_isolated_margin_conflicts_with_multi_assets_mode_and_open_orders(exchange, account):
    from execution.aster.simulator.server import h_margin_type

    handler = SimpleNamespace(server=SimpleNamespace(exchange=exchange))  # what the handler uses
    account.multi_assets = True
    with pytest.raises(SimError) as caught:
        h_margin_type(handler, account, {"symbol": "BTCUSDT", "marginType": "ISOLATED"})
    assert caught.value.code == -4168
    account.multi_assets = False
    order(
        exchange, account, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.01", price="60000", timeInForce="GTC"
    )
    with pytest.raises(SimError) as caught:
        h_margin_type(handler, account, {"symbol": "BTCUSDT", "marginType": "ISOLATED"})
    assert caught.value.code == -4047


def test_countdown_cancels_the_symbols_open_orders(exchange, account, clock):
    resting = order(
        exchange, account, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.01", price="60000", timeInForce="GTC"
    )
    account.countdowns["BTCUSDT"] = (1000, exchange.now_ms() + 1000)
    exchange.check_countdowns()
    assert resting.status == "NEW"
    clock.now += 1.5
    exchange.check_countdowns()
    assert resting.status == "CANCELED" and not account.countdowns
