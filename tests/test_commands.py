import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from execution.models import Trade

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("execute_order", *args, stdout=out)
    return out.getvalue()


def test_execute_order_places_a_paper_order_with_protection(market, paper_account):
    output = run(
        "--account",
        str(paper_account.pk),
        "--symbol",
        "BTCUSDT",
        "--side",
        "BUY",
        "--quantity",
        "0.01",
        "--leverage",
        "5",
        "--take-profit",
        "70000",
        "--stop-loss",
        "60000",
    )
    assert "BUY 0.01" in output and "[filled]" in output
    assert "take_profit: trigger 70000 [pending]" in output
    assert Trade.objects.count() == 1
    # Figures as people write them: no storage zeros (the fill's price and fee have ten decimals).
    assert not re.search(r"\d\.\d*0\b", output), output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "0", "--leverage", "5"], "INVALID_QUANTITY"),
        (["--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "x", "--leverage", "5"], "quantity"),
        (["--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "0.01", "--leverage", "30"], "LEVERAGE_TOO_HIGH"),
        (["--symbol", "NOPEUSDT", "--side", "BUY", "--quantity", "0.01", "--leverage", "5"], "UNKNOWN_SYMBOL"),
        (
            ["--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "0.01", "--leverage", "5", "--stop-loss", "90000"],
            "INVALID_PROTECTION",
        ),
    ],
)
def test_execute_order_bad_input_is_a_command_error_and_writes_nothing(market, paper_account, args, message):
    with pytest.raises(CommandError, match=message):
        run("--account", str(paper_account.pk), *args)
    assert not Trade.objects.exists()


def test_execute_order_unknown_account(market):
    with pytest.raises(CommandError, match="no account"):
        run("--account", "999", "--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "0.01", "--leverage", "5")


def test_execute_order_bad_side_is_refused_by_the_parser(market, paper_account):
    with pytest.raises(CommandError):
        run(
            "--account",
            str(paper_account.pk),
            "--symbol",
            "BTCUSDT",
            "--side",
            "HOLD",
            "--quantity",
            "1",
            "--leverage",
            "5",
        )
