"""The audit trail and the one place statuses change.

Both functions must run inside the caller's transaction, so that a state change and its
ExecutionEvent commit (or roll back) together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone

from accounts.models import Account
from execution.exceptions import InvalidTransition
from execution.models import ExecutionEvent


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
    return ExecutionEvent.objects.create(
        account=account,
        kind=kind,
        subject_type=(subject._meta.model_name or "") if subject is not None else "",
        subject_id=subject.pk if subject is not None else None,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )


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
