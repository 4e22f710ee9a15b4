"""Log lines: JSON with the bound ids, secrets and signatures redacted (issue 15)."""

import io
import json
import logging

import pytest
import structlog

from config.structured_logging import logging_config, redact_text
from execution.log_context import bound


def capture(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    options = dict(logging_config(log_format=log_format, level="INFO")["formatters"]["structured"])
    options.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(**options))
    logger = logging.getLogger(f"test.structured.{log_format}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_bound_ids_and_no_secret():
    logger, stream = capture("json")
    signature = "9f" * 32
    with bound(account_id=12, decision_id=34, client_order_id="k12-abc", unused=None):
        logger.info("POST /fapi/v1/order?symbol=BTCUSDT&signature=%s", signature)
        logger.warning("listenKey=%s expired", "pqrs" * 16, extra={"api_secret": "hunter2", "order_id": 5})
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first, second, third = lines
    assert first["account_id"] == 12 and first["decision_id"] == 34 and first["client_order_id"] == "k12-abc"
    assert "unused" not in first
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert second["api_secret"] == "[redacted]" and second["order_id"] == 5
    assert "account_id" not in third
    text = stream.getvalue()
    for secret in (signature, "hunter2", "pqrs" * 16):
        assert secret not in text


def test_tracebacks_are_plain_and_redacted_in_console_lines():
    logger, stream = capture("console")
    private_key = "0x" + "ab" * 32
    try:
        raise RuntimeError(f"signer failed with private_key={private_key}")
    except RuntimeError:
        logger.exception("signing failed")
    text = stream.getvalue()
    assert "RuntimeError" in text and "[redacted]" in text
    assert private_key not in text and "ab" * 32 not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("X-MBX-APIKEY: abcdef123", "X-MBX-APIKEY: [redacted]"),
        ("{'api_key': 'K1', 'symbol': 'BTCUSDT'}", "{'api_key': '[redacted]', 'symbol': 'BTCUSDT'}"),
        ("nonce=1&signature=0xdeadbeef&x=1", "nonce=1&signature=[redacted]&x=1"),
        ("order 12345 filled at 65000.5", "order 12345 filled at 65000.5"),
    ],
)
def test_redact_text(raw, expected):
    assert redact_text(raw) == expected


def test_a_bad_log_format_is_refused_at_start_up():
    from tests.test_settings import run_manage

    result = run_manage("check", DEBUG="1", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be json or console" in result.stderr
