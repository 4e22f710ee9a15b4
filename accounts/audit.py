"""The audit trail and the one place statuses change.

Every status change of every stateful model (Trade, Position, PendingOrder, Decision) goes
through one of three functions here, which check the model's `TRANSITIONS` table and record
an ExecutionEvent in the caller's transaction, so that a change and its event commit (or roll
back) together:

- `transition`: one row, saved here;
- `transition_unsaved`: one row held in memory by a batch writer, which saves it itself;
- `bulk_transition`: many rows in one UPDATE per from-status, events inserted at once.

It lives in `accounts` (the lowest app) so that account services can audit their own changes
without importing `execution`: apps depend one way, `accounts` <- `execution` <- `decisions`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from accounts.models import Account, ExecutionEvent
from accounts.row_sql import insert_columns, mark_saved, placeholder, qn

_batches = threading.local()


class InvalidTransition(Exception):
    """A status change that the model's TRANSITIONS table does not allow (a bug or a race)."""

    code = "INVALID_TRANSITION"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


# --------------------------------------------------------------------------- events


@contextmanager
def batched_events() -> Iterator[None]:
    """Collect the events recorded inside and insert them with one query on exit.

    Use inside the transaction whose changes they describe, so they commit together. Events
    of rows that were not saved yet take their subject's primary key when they are inserted.
    """
    batch = getattr(_batches, "events", None)
    if batch is not None:  # already batching: join the outer batch
        mark = len(batch)
        try:
            yield
        except BaseException:
            # The block failed (its savepoint, if any, rolls back): its events must not commit
            # with the outer batch if the caller catches the error and goes on.
            del batch[mark:]
            raise
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
    for event in events:
        _resolve_subject(event)
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


def _resolve_subject(event: ExecutionEvent) -> None:
    """A batched event of a row inserted later in the same batch gets its key now."""
    subject = getattr(event, "_subject", None)
    if event.subject_id is None and subject is not None:
        if subject.pk is None:
            raise ValueError(f"the {event.kind} event's subject was never saved")
        event.subject_id = subject.pk


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
    event._subject = subject  # type: ignore[attr-defined]  # for rows saved later in the batch
    batch = getattr(_batches, "events", None)
    if batch is not None:
        batch.append(event)
    else:
        _resolve_subject(event)
        event.save()
    return event


# --------------------------------------------------------------------------- transitions


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
    """Move `obj` to `to_status` if its model's TRANSITIONS allow it; save and audit.

    The write is a compare-and-set on the status `obj` was read with: if another writer moved
    the row meanwhile (a stale object), nothing is written and InvalidTransition is raised, so
    two writers can never both apply the same change (say, book one fill twice)."""
    check_transition(obj, to_status)
    from_status = obj.status
    names = ["status", *update_fields]
    if hasattr(obj, "updated_at"):
        obj.updated_at = timezone.now()
        names.append("updated_at")
    names = list(dict.fromkeys(names))
    obj.status = to_status
    event = ExecutionEvent(
        account=account,
        kind=f"{obj._meta.model_name}.{to_status}",
        subject_type=obj._meta.model_name or "",
        subject_id=obj.pk,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )
    batch = getattr(_batches, "events", None)
    # Outside a batch on PostgreSQL the event rides in the UPDATE's round trip (a CTE that
    # inserts it only if the compare-and-set matched); elsewhere it follows the UPDATE.
    together = batch is None and connection.vendor == "postgresql"
    if _compare_and_set(obj, names, from_status, event if together else None) != 1:
        obj.status = from_status
        raise InvalidTransition(
            f"{type(obj).__name__} #{obj.pk} is no longer {from_status!r}: another writer changed it",
            details={"from": from_status, "to": to_status},
        )
    event._subject = obj  # type: ignore[attr-defined]
    if batch is not None:
        batch.append(event)
    elif not together:
        event.save()
    return event


def _compare_and_set(obj: Any, names: list[str], from_status: str, event: ExecutionEvent | None) -> int:
    """`UPDATE ... SET <names> WHERE pk = ... AND status = <from_status>`; with `event`, the
    event is inserted by the same statement for the row it updated. Returns the rows updated."""
    opts = obj._meta
    fields = [opts.get_field(name) for name in names]
    values = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    update = f"UPDATE {qn(opts.db_table)} SET {assignments} WHERE {qn(opts.pk.column)} = %s AND {qn('status')} = %s"
    params = [*values, obj.pk, from_status]
    if event is not None:
        columns, event_values = insert_columns(event)
        update = (
            f"WITH changed AS ({update} RETURNING {qn(opts.pk.column)}) "
            f"INSERT INTO {qn(ExecutionEvent._meta.db_table)} ({', '.join(qn(f.column) for f in columns)}) "
            f"SELECT {', '.join(placeholder(f) for f in columns)} FROM changed"
        )
        params += event_values
        update += " RETURNING id"
    with connection.cursor() as cursor:
        cursor.execute(update, params)
        count = int(cursor.rowcount)
        if event is not None and count == 1:
            mark_saved(event, cursor.fetchone()[0])
        return count


def create_audited(
    obj: models.Model,
    *,
    account: Account,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> ExecutionEvent:
    """Insert the new row `obj` (in its model's initial status: nothing is SET) and its
    creation event `<model>.<status>`, in one round trip on PostgreSQL (a data-modifying CTE:
    `WITH created AS (INSERT ... RETURNING id) INSERT INTO execution_executionevent ...`),
    two statements elsewhere. Outside a batch only (the order path's reserve step)."""
    status = obj.status  # type: ignore[attr-defined]
    if status not in type(obj).TRANSITIONS:  # type: ignore[attr-defined]
        raise InvalidTransition(f"{type(obj).__name__} cannot be created as {status!r}.", details={"to": status})
    if getattr(_batches, "events", None) is not None:
        raise RuntimeError("create_audited writes its event at once: not inside batched_events()")
    opts = obj._meta
    event = ExecutionEvent(
        account=account,
        kind=f"{opts.model_name}.{status}",
        subject_type=opts.model_name or "",
        to_status=status,
        message=message,
        data=data or {},
    )
    fields, values = insert_columns(obj)
    pk = opts.pk.column
    insert = (
        f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join('%s' for _ in fields)}) RETURNING {qn(pk)}"
    )
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(insert, values)
            mark_saved(obj, cursor.fetchone()[0])
            event.subject_id = obj.pk
            event.save()
            return event
        kept = [(f, v) for f, v in zip(*insert_columns(event), strict=True) if f.name != "subject_id"]
        columns, event_values = [f for f, _v in kept], [v for _f, v in kept]
        cursor.execute(
            f"WITH created AS ({insert}) "
            f"INSERT INTO {qn(ExecutionEvent._meta.db_table)} "
            f"({', '.join(qn(f.column) for f in columns)}, {qn('subject_id')}) "
            f"SELECT {', '.join(placeholder(f) for f in columns)}, created.{qn(pk)} FROM created "
            f"RETURNING {qn('subject_id')}, {qn('id')}",
            [*values, *event_values],
        )
        subject_id, event_id = cursor.fetchone()
    mark_saved(obj, subject_id)
    event.subject_id = subject_id
    mark_saved(event, event_id)
    return event


def transition_unsaved(
    obj: Any,
    *,
    to_status: str,
    account: Account,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """`transition` for batch writers: check the table, set the status and record the event;
    the caller saves the object (bulk insert or update) in the same transaction and batch."""
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


def bulk_transition(
    queryset: models.QuerySet[Any],
    *,
    to_status: str,
    now: datetime | None = None,
    values: dict[str, Any] | None = None,
    message: str = "",
) -> list[int]:
    """Move every row of `queryset` to `to_status` with one UPDATE per from-status, checking
    each from-status against the model's TRANSITIONS, and insert the rows' events at once.

    The caller holds the rows (`select_for_update`) in its transaction; a row that changed
    status in between makes the UPDATE's row count differ, and that raises (never a silent
    partial change). `values` are further columns set on every row. Returns the keys moved.
    """
    model = queryset.model
    now = now or timezone.now()
    rows = list(queryset.order_by().values_list("pk", "account_id", "status"))
    by_status: dict[str, list[int]] = defaultdict(list)
    for pk, _account_id, status in rows:
        by_status[status].append(pk)
    for from_status, pks in by_status.items():
        if to_status not in model.TRANSITIONS.get(from_status, frozenset()):
            raise InvalidTransition(
                f"{model.__name__} #{pks[0]} cannot go from {from_status!r} to {to_status!r}.",
                details={"from": from_status, "to": to_status, "rows": len(pks)},
            )
        changes = {"status": to_status, **(values or {})}
        if any(f.name == "updated_at" for f in model._meta.concrete_fields):
            changes["updated_at"] = now
        updated = model._default_manager.filter(pk__in=pks, status=from_status).update(**changes)
        if updated != len(pks):
            raise InvalidTransition(
                f"{len(pks) - updated} {model.__name__} row(s) left {from_status!r} while being moved to "
                f"{to_status!r}: hold them with select_for_update",
                details={"from": from_status, "to": to_status},
            )
    kind = f"{model._meta.model_name}.{to_status}"
    events = [
        ExecutionEvent(
            account_id=account_id,
            kind=kind,
            subject_type=model._meta.model_name or "",
            subject_id=pk,
            from_status=status,
            to_status=to_status,
            message=message,
            created_at=now,
        )
        for pk, account_id, status in rows
    ]
    batch = getattr(_batches, "events", None)
    if batch is not None:
        batch.extend(events)
    elif events:
        insert_events(events)
    return [pk for pk, _account_id, _status in rows]
