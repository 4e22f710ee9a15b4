"""User-data frames parsed into typed events (ASTER_WS.md §2); malformed frames refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from execution.aster.streams.frames import StreamFrameError
from execution.aster.streams.user_events import (
    AccountConfigUpdate,
    AccountUpdate,
    ListenKeyExpired,
    MarginCall,
    OrderTradeUpdate,
    parse_user_frame,
)


def order_event(**overrides: Any) -> dict[str, Any]:
    order = {
        "s": "BTCUSDT", "c": "k1-abc-tp", "S": "SELL", "o": "MARKET", "f": "GTC", "q": "0.010",
        "p": "0", "ap": "70100.5", "sp": "70000", "x": "TRADE", "X": "FILLED", "i": 8886774,
        "l": "0.010", "z": "0.010", "L": "70100.5", "N": "USDT", "n": "0.2453", "T": 1568879465651,
        "t": 123, "b": "0", "a": "0", "m": False, "R": True, "wt": "MARK_PRICE",
        "ot": "TAKE_PROFIT_MARKET", "ps": "BOTH", "cp": True, "rp": "12.5",
    }  # fmt: skip
    order.update(overrides)
    return {"e": "ORDER_TRADE_UPDATE", "E": 1568879465652, "T": 1568879465650, "o": order}


def frame(payload: Any) -> str:
    return json.dumps(payload)


def test_order_trade_update_every_field() -> None:
    event = parse_user_frame(frame(order_event()))
    assert isinstance(event, OrderTradeUpdate)
    assert event.event_time_ms == 1568879465652 and event.transaction_time_ms == 1568879465650
    assert (event.symbol, event.client_order_id, event.side) == ("BTCUSDT", "k1-abc-tp", "SELL")
    assert (event.order_type, event.original_type) == ("MARKET", "TAKE_PROFIT_MARKET")
    assert (event.execution_type, event.status, event.order_id, event.trade_id) == ("TRADE", "FILLED", "8886774", 123)
    assert event.last_quantity == Decimal("0.010") and event.cumulative_quantity == Decimal("0.010")
    assert event.last_price == Decimal("70100.5") and event.average_price == Decimal("70100.5")
    assert event.commission == Decimal("0.2453") and event.commission_asset == "USDT"
    assert event.realized_pnl == Decimal("12.5")
    assert event.reduce_only and event.close_position and not event.maker
    assert event.is_fill and event.is_final and not event.is_liquidation and not event.is_adl
    assert all(isinstance(v, Decimal) for v in (event.quantity, event.price, event.stop_price))


def test_commission_omitted_means_zero() -> None:
    payload = order_event()
    del payload["o"]["n"], payload["o"]["N"]
    event = parse_user_frame(frame(payload))
    assert isinstance(event, OrderTradeUpdate)
    assert event.commission == Decimal("0") and event.commission_asset == ""


def test_new_event_is_not_a_fill_and_missing_ot_falls_back_to_o() -> None:
    payload = order_event(x="NEW", X="NEW", l="0", z="0", L="0", t=0, o="STOP_MARKET")
    del payload["o"]["ot"], payload["o"]["rp"]
    event = parse_user_frame(frame(payload))
    assert isinstance(event, OrderTradeUpdate)
    assert not event.is_fill and event.original_type == "STOP_MARKET" and event.realized_pnl is None


@pytest.mark.parametrize(
    ("overrides", "liquidation", "adl"),
    [
        ({"c": "autoclose-1234", "o": "LIQUIDATION", "ot": "LIQUIDATION"}, True, False),
        ({"c": "adl_autoclose", "X": "NEW_ADL"}, False, True),
        ({"c": "web_xyz", "x": "CALCULATED"}, True, False),
    ],
)
def test_liquidation_and_adl(overrides: dict[str, Any], liquidation: bool, adl: bool) -> None:
    event = parse_user_frame(frame(order_event(**overrides)))
    assert isinstance(event, OrderTradeUpdate)
    assert (event.is_liquidation, event.is_adl) == (liquidation, adl)


def test_account_update_balances_and_positions() -> None:
    payload = {
        "e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
        "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.1"}],
              "P": [{"s": "BTCUSDT", "pa": "0.020", "ep": "6563.665", "cr": "0", "up": "2850.212",
                     "mt": "isolated", "iw": "13200.70726908", "ps": "BOTH"},
                    {"s": "ETHUSDT", "pa": "0", "ep": "0", "cr": "200", "up": "0", "mt": "cross", "iw": "0",
                     "ps": "BOTH"}]},
    }  # fmt: skip
    event = parse_user_frame(frame(payload))
    assert isinstance(event, AccountUpdate)
    assert event.reason == "ORDER"
    usdt = event.balance("USDT")
    assert usdt is not None and usdt.wallet_balance == Decimal("122624.12345678")
    assert event.balance("BNB") is None
    assert [(p.symbol, p.amount, p.entry_price) for p in event.positions] == [
        ("BTCUSDT", Decimal("0.020"), Decimal("6563.665")),
        ("ETHUSDT", Decimal("0"), Decimal("0")),
    ]


def test_account_config_update_and_margin_call_and_expiry() -> None:
    leverage = parse_user_frame(frame({"e": "ACCOUNT_CONFIG_UPDATE", "E": 5, "T": 4, "ac": {"s": "BTCUSDT", "l": 25}}))
    assert isinstance(leverage, AccountConfigUpdate) and (leverage.symbol, leverage.leverage) == ("BTCUSDT", 25)
    mode = parse_user_frame(frame({"e": "ACCOUNT_CONFIG_UPDATE", "E": 5, "ai": {"j": True, "f": False, "d": True}}))
    assert isinstance(mode, AccountConfigUpdate) and (mode.multi_assets, mode.fee_token, mode.hedge_mode) == (
        True,
        False,
        True,
    )
    call = parse_user_frame(
        frame(
            {
                "e": "MARGIN_CALL",
                "E": 7,
                "cw": "3.16812045",
                "p": [
                    {
                        "s": "ETHUSDT",
                        "ps": "LONG",
                        "pa": "1.327",
                        "mt": "CROSSED",
                        "iw": "0",
                        "mp": "187.17127",
                        "up": "-1.166074",
                        "mm": "1.614445",
                    }
                ],
            }
        )
    )
    assert isinstance(call, MarginCall) and call.positions[0].maintenance_margin == Decimal("1.614445")
    expired = parse_user_frame(frame({"e": "listenKeyExpired", "E": 1576653824250}))
    assert expired == ListenKeyExpired(event_time_ms=1576653824250)


@pytest.mark.parametrize(
    "payload",
    [
        {"e": "announcement", "en": {"t": "new listing"}, "zh": {}},  # V3: no E
        {"e": "somethingNew", "E": 1},
        {"result": None, "id": 1},
        {"code": 0, "msg": "Unknown property"},
    ],
)
def test_other_frames_are_ignored(payload: dict[str, Any]) -> None:
    assert parse_user_frame(frame(payload)) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "not JSON"),
        ([1, 2], "not an object"),
        ({"e": "ORDER_TRADE_UPDATE", "E": 1}, "o: expected an object"),
        (order_event(S="HOLD"), "S: expected one of"),
        (order_event(x="FILLED"), "x: expected one of"),
        (order_event(X="DONE"), "X: expected one of"),
        (order_event(l=[1]), "l: expected a number"),
        (order_event(l="-1"), "l: below"),
        (order_event(L="0"), "a fill's price must be > 0"),
        (order_event(L="NaN"), "not finite"),
        (order_event(i="abc"), "i: expected a non-negative integer"),
        (order_event(c=""), "c: expected a string"),
        (order_event(s="btcusdt"), "bad symbol"),
        (order_event(R="yes"), "R: expected true or false"),
        ({**order_event(), "E": "soon"}, "E: expected a time"),
        ({"e": "ACCOUNT_UPDATE", "E": 1, "a": {"B": [{"a": "USDT"}]}}, "wb: expected a number"),
        ({"e": "ACCOUNT_UPDATE", "E": 1, "a": {"P": "nope"}}, "P: expected a list"),
        ({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1}, "neither 'ac' nor 'ai'"),
        ({"e": "listenKeyExpired"}, "E: expected a time"),
    ],
)
def test_malformed_frames_raise_a_clear_error(payload: Any, message: str) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    with pytest.raises(StreamFrameError, match=message):
        parse_user_frame(text)
