from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execution.aster.errors import AsterInputError
from execution.aster.numbers import format_decimal, input_decimal, round_down_to_step, round_to_tick
from execution.aster.rules import parse_exchange_info
from tests import aster_payloads as P

steps = st.sampled_from([Decimal("0.001"), Decimal("0.01"), Decimal("1"), Decimal("0.5"), Decimal("0.0001")])
values = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("1000000"), places=8, allow_nan=False, allow_infinity=False
)


@given(values, steps)
def test_round_down_to_step_is_a_multiple_not_above_and_within_one_step(value, step):
    rounded = round_down_to_step(value, step)
    assert rounded <= value
    assert value - rounded < step
    assert rounded % step == 0


@given(values, steps)
def test_round_to_tick_is_the_nearest_multiple(value, tick):
    rounded = round_to_tick(value, tick)
    assert rounded % tick == 0
    assert abs(value - rounded) <= tick / 2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E+2"), "100"),
        (Decimal("0.0100"), "0.01"),
        (Decimal("65000.0"), "65000"),
        (Decimal("1E-8"), "0.00000001"),
    ],
)
def test_format_decimal_never_uses_an_exponent(value, text):
    assert format_decimal(value) == text


@pytest.mark.parametrize("bad", [0.1, True, None, "1e", "nan", "Infinity", "", "-0.5"])
def test_input_decimal_refuses_floats_and_non_numbers(bad):
    with pytest.raises(AsterInputError):
        input_decimal(bad, field="quantity")


def test_rules_check_quantity_and_price_and_min_notional():
    rules = parse_exchange_info(P.EXCHANGE_INFO).rules("BTCUSDT")
    assert rules.check_quantity(Decimal("0.0129"), market=True) == Decimal("0.012")
    assert rules.check_price(Decimal("65000.06")) == Decimal("65000.1")
    assert rules.meets_min_notional(Decimal("0.001"), Decimal("65000"))
    assert not rules.meets_min_notional(Decimal("0.001"), Decimal("4000"))
    with pytest.raises(AsterInputError, match="above the maximum"):
        rules.check_quantity(Decimal("500"), market=True)
    assert rules.check_quantity(Decimal("500"), market=False) == Decimal("500")  # LOT_SIZE allows it
