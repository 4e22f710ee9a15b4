"""The audit trail and the one place statuses change.

Both functions must run inside the caller's transaction, so that a state change and its
ExecutionEvent commit (or roll back) together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from accounts.models import Account
from execution.exceptions import InvalidTransition
from execution.models import ExecutionEvent

_batches = threading.local()


@contextmanager
def batched_events() -> Iterator[None]:
    """Collect the events recorded inside and insert them with one query on exit.

    Use inside the transaction whose changes they describe, so they commit together.
    """
    if getattr(_batches, "events", None) is not None:  # already batching: join the outer batch
        yield
        return
    _batches.events = []
    try:
        yield
        if _batches.events:
            insert_events(_batches.events)
    finally:
        _batches.events = None


EVENT_COLUMNS = (
    "account_id",
    "kind",
    "subject_type",
    "subject_id",
    "from_status",
    "to_status",
    "message",
    "data",
    "created_at",
)


def insert_events(events: list[ExecutionEvent]) -> None:
    """Insert many events: COPY on PostgreSQL (an order of magnitude cheaper than INSERT for
    thousands of rows), fixed-size bulk INSERTs elsewhere (the driver caches their parsing)."""
    if connection.vendor != "postgresql" or len(events) < 50:
        ExecutionEvent.objects.bulk_create(events, batch_size=250)
        return
    now = timezone.now()
    encoder = DjangoJSONEncoder()
    table = connection.ops.quote_name(ExecutionEvent._meta.db_table)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor, for COPY
        with raw.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(
                    (
                        event.account_id,
                        event.kind,
                        event.subject_type,
                        event.subject_id,
                        event.from_status,
                        event.to_status,
                        event.message,
                        encoder.encode(event.data),
                        event.created_at or now,
                    )
                )


def pending_event_count() -> int:
    """How many events the current batch holds (0 outside a batch): a savepoint marker."""
    batch = getattr(_batches, "events", None)
    return len(batch) if batch is not None else 0


def discard_events_after(mark: int) -> None:
    """Forget batched events recorded after `mark` (their savepoint was rolled back)."""
    batch = getattr(_batches, "events", None)
    if batch is not None:
        del batch[mark:]


def record_event(
    *,
    account: Account | None,
    kind: str,
    subject: models.Model | None = None,
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
) -> ExecutionEvent:
    event = ExecutionEvent(
        account=account,
        kind=kind,
        subject_type=(subject._meta.model_name or "") if subject is not None else "",
        subject_id=subject.pk if subject is not None else None,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )
    batch = getattr(_batches, "events", None)
    if batch is not None:
        batch.append(event)
    else:
        event.save()
    return event


def check_transition(obj: Any, to_status: str) -> None:
    allowed = type(obj).TRANSITIONS.get(obj.status, frozenset())
    if to_status not in allowed:
        raise InvalidTransition(
            f"{type(obj).__name__} #{obj.pk} cannot go from {obj.status!r} to {to_status!r}.",
            details={"from": obj.status, "to": to_status},
        )


def transition(
    obj: Any,
    *,
    to_status: str,
    account: Account,
    update_fields: Iterable[str] = (),
    message: str = "",
    data: dict[str, Any] | None = None,
) -> ExecutionEvent:
    """Move `obj` to `to_status` if its model's TRANSITIONS allow it; save and audit."""
    check_transition(obj, to_status)
    from_status = obj.status
    obj.status = to_status
    fields = {"status", *update_fields}
    if hasattr(obj, "updated_at"):
        obj.updated_at = timezone.now()
        fields.add("updated_at")
    obj.save(update_fields=sorted(fields))
    kind = f"{obj._meta.model_name}.{to_status}"
    return record_event(
        account=account,
        kind=kind,
        subject=obj,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data,
    )


def transition_unsaved(
    obj: Any,
    *,
    to_status: str,
    account: Account,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """`transition` for batch writers: check the table, set the status and record the event;
    the caller saves the object (with bulk_update) in the same transaction."""
    check_transition(obj, to_status)
    from_status = obj.status
    obj.status = to_status
    if hasattr(obj, "updated_at"):
        obj.updated_at = timezone.now()
    record_event(
        account=account,
        kind=f"{obj._meta.model_name}.{to_status}",
        subject=obj,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data,
    )
