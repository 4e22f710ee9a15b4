"""Position arithmetic with worked numbers (ASTER_API.md section 6) and properties."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execution.services.brackets import DEFAULT_TIERS
from execution.services.position_math import (
    Holding,
    MaintenanceTier,
    apply_fill,
    funding_payment,
    initial_margin,
    liquidation_price,
    liquidation_price_for_tier,
    maintenance_margin,
    roe,
    taker_fee,
    unrealized_pnl,
)

D = Decimal
TIER_1 = MaintenanceTier(D("0"), D("50000"), 125, D("0.004"), D("0"))
TIER_2 = MaintenanceTier(D("50000"), D("250000"), 100, D("0.005"), D("50"))


def test_docs_liquidation_example_isolated_long():
    price = liquidation_price_for_tier("LONG", D("1"), D("10000"), D("1000"), TIER_1)
    assert price.quantize(D("0.0001")) == D("9036.1446")


def test_docs_liquidation_example_isolated_short():
    price = liquidation_price_for_tier("SHORT", D("1"), D("10000"), D("1000"), TIER_1)
    assert price.quantize(D("0.0001")) == D("10956.1753")


def test_docs_liquidation_example_second_bracket_and_its_maintenance_margin():
    price = liquidation_price_for_tier("LONG", D("2"), D("50000"), D("10000"), TIER_2)
    assert price.quantize(D("0.0001")) == D("45201.0050")
    assert maintenance_margin(D("2"), D("50000"), DEFAULT_TIERS) == D("450")


def test_liquidation_price_uses_the_bracket_at_the_liquidation_price():
    # 1.1 BTC @ 50,000 is 55,000 notional (bracket 2), but at the liquidation price the
    # notional is below 50,000: bracket 1 applies.
    price = liquidation_price("LONG", D("1.1"), D("50000"), D("11000"), DEFAULT_TIERS)
    assert price == liquidation_price_for_tier("LONG", D("1.1"), D("50000"), D("11000"), TIER_1)
    assert price * D("1.1") < D("50000")


def test_no_liquidation_price_when_fully_collateralised():
    assert liquidation_price("LONG", D("1"), D("100"), D("200"), DEFAULT_TIERS) is None


def test_unrealized_pnl_roe_margin_and_funding_worked_numbers():
    assert unrealized_pnl("LONG", D("0.5"), D("60000"), D("61000")) == D("500")
    assert unrealized_pnl("SHORT", D("0.5"), D("60000"), D("61000")) == D("-500")
    assert initial_margin(D("0.5"), D("60000"), 10) == D("3000")
    assert roe("LONG", D("0.5"), D("60000"), D("61000"), 10) == D("500") / D("3050")
    assert funding_payment("LONG", D("2"), D("3000"), D("0.0001")) == D("0.6")
    assert funding_payment("SHORT", D("2"), D("3000"), D("0.0001")) == D("-0.6")
    assert funding_payment("LONG", D("2"), D("3000"), D("-0.0001")) == D("-0.6")


def test_weighted_entry_on_add_and_realized_on_reduce():
    first = apply_fill(Holding.flat(), side="BUY", quantity=D("1"), price=D("100"))
    added = apply_fill(first.after, side="BUY", quantity=D("3"), price=D("200"))
    assert added.after == Holding("LONG", D("4"), D("175"))
    reduced = apply_fill(added.after, side="SELL", quantity=D("1"), price=D("275"))
    assert reduced.gross_realized_pnl == D("100") and reduced.after == Holding("LONG", D("3"), D("175"))


def test_fill_must_be_positive():
    with pytest.raises(ValueError):
        apply_fill(Holding.flat(), side="BUY", quantity=D("0"), price=D("1"))


quantities = st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3)
prices = st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2)
rates = st.decimals(min_value=D("0"), max_value=D("0.001"), places=5)
sides = st.sampled_from(["BUY", "SELL"])


def round_trip_realized(side: str, quantity: Decimal, entry: Decimal, exit_: Decimal, rate: Decimal) -> Decimal:
    opened = apply_fill(Holding.flat(), side=side, quantity=quantity, price=entry)
    closing = "SELL" if side == "BUY" else "BUY"
    closed = apply_fill(opened.after, side=closing, quantity=quantity, price=exit_)
    assert closed.after == Holding.flat()
    fees = taker_fee(quantity, entry, rate) + taker_fee(quantity, exit_, rate)
    return closed.gross_realized_pnl - fees


@given(sides, quantities, prices, rates)
def test_closing_at_the_entry_price_realizes_exactly_minus_the_fees(side, quantity, price, rate):
    fees = taker_fee(quantity, price, rate) * 2
    assert round_trip_realized(side, quantity, price, price, rate) == -fees


@given(quantities, prices, prices, rates)
def test_pnl_is_symmetric_between_long_and_short(quantity, entry, exit_, rate):
    fees = taker_fee(quantity, entry, rate) + taker_fee(quantity, exit_, rate)
    long_pnl = round_trip_realized("BUY", quantity, entry, exit_, rate) + fees
    short_pnl = round_trip_realized("SELL", quantity, entry, exit_, rate) + fees
    assert long_pnl == -short_pnl
    assert unrealized_pnl("LONG", quantity, entry, exit_) == -unrealized_pnl("SHORT", quantity, entry, exit_)


@given(sides, quantities, quantities, prices, prices)
def test_a_flip_equals_a_close_plus_an_open(side, held, extra, entry, price):
    start = apply_fill(Holding.flat(), side=side, quantity=held, price=entry).after
    opposite = "SELL" if side == "BUY" else "BUY"
    flip = apply_fill(start, side=opposite, quantity=held + extra, price=price)
    close = apply_fill(start, side=opposite, quantity=held, price=price)
    reopen = apply_fill(close.after, side=opposite, quantity=extra, price=price)
    assert flip.gross_realized_pnl == close.gross_realized_pnl
    assert flip.after == reopen.after
    assert flip.flipped and flip.closed_quantity == held and flip.opened_quantity == extra
