"""The ids a log line carries: bound for the duration of an order, a sweep or a stream event,
so every line logged inside says which account, decision and order it is about.

    with bound(account_id=account.pk, client_order_id=cid):
        ...  # every logger.* call here carries both ids
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Bind non-empty ids to the current context (thread or task) for the block."""
    present = {key: value for key, value in ids.items() if value not in (None, "")}
    with structlog.contextvars.bound_contextvars(**present):
        yield
