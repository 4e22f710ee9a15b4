"""Log lines: JSON in production, readable console lines in DEBUG (LOG_FORMAT=json|console).

Every standard-library `logging` call goes through structlog's ProcessorFormatter, so the
existing `logger.info("...%s", x)` calls gain, with no change at the call site:
- a UTC ISO timestamp, the level and the logger name;
- the ids bound for the current order or job (`execution.log_context.bound`: account_id,
  decision_id, client_order_id, ...), from context variables;
- redaction: values of secret-looking keys, and signatures, API keys and listen keys inside
  the message text, are replaced with "[redacted]" before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
SECRET_KEY_NAMES = re.compile(r"(secret|signature|private|password|passwd|token|api_?key|listen_?key)", re.I)
SECRET_TEXT = [
    # name=value pairs in URLs, bodies and reprs: signature=0x..., X-MBX-APIKEY: ..., listenKey=...
    re.compile(
        r"(?i)\b(signature|apikey|api_key|api_secret|secret|x-mbx-apikey|listenkey|private_key|token)"
        r"(['\"]?\s*[=:]\s*['\"]?)([^\s&'\",}]+)"
    ),
    # bare long hex strings (HMAC signatures, EIP-712 signatures, private keys, listen keys)
    re.compile(r"\b(0x)?[0-9a-fA-F]{60,}\b"),
]


def redact_text(text: str) -> str:
    text = SECRET_TEXT[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return SECRET_TEXT[1].sub(REDACTED, text)


def redact(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key in ("event", "exc_info", "stack_info"):
            continue
        if SECRET_KEY_NAMES.search(key) and not key.endswith("_id"):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_text(value)
    if isinstance(event.get("event"), str):
        event["event"] = redact_text(event["event"])
    if isinstance(event.get("exception"), str):
        event["exception"] = redact_text(event["exception"])
    return event


def _pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The dictConfig for Django's LOGGING setting."""
    if log_format not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be json or console, got {log_format!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    # Tracebacks become plain text before redaction (never a "pretty" traceback with locals,
    # which could print a secret held in a local variable).
    processors: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": processors,
                "foreign_pre_chain": _pre_chain(),
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }
