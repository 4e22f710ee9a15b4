"""Writing a ParityRecord without ever failing the caller."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction

from execution.metrics import PARITY_FAILURES
from execution.models import ParityRecord

logger = logging.getLogger(__name__)


def save_record(**fields: Any) -> ParityRecord | None:
    """Insert one record (in its own savepoint when the caller holds a transaction). A
    second record for the same fill is ignored (the unique constraints decide); any other
    failure is logged and counted. Returns the record, or None."""
    try:
        connection = transaction.get_connection()
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: the caller's transaction survives a failure
                return ParityRecord.objects.create(**fields)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # The order path does not wait for this row's WAL flush: a record lost in a
                # crash is acceptable. Only in a transaction of our own (SET LOCAL would
                # otherwise carry over to a caller's transaction).
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            return ParityRecord.objects.create(**fields)
    except IntegrityError:
        logger.info("parity: %s of account %s already recorded", fields.get("source_key"), fields.get("account_id"))
        return None
    except Exception:
        failed("write", fields.get("kind", ""))
        return None


def failed(stage: str, kind: str) -> None:
    """A parity step failed: logged with its traceback and counted, never raised."""
    logger.exception("parity %s failed (%s)", stage, kind or "unknown kind")
    PARITY_FAILURES.labels(stage=stage).inc()
