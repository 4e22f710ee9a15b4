"""The audit trail and the one place statuses change.

Both functions must run inside the caller's transaction, so that a state change and its
ExecutionEvent commit (or roll back) together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models
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
            # Fixed-size batches: identical statements, whose parsing the driver caches.
            ExecutionEvent.objects.bulk_create(_batches.events, batch_size=250)
    finally:
        _batches.events = None


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
