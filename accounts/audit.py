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
from functools import lru_cache
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from accounts.models import Account, ExecutionEvent
from accounts.row_sql import (
    current_queue,
    insert_returning_key,
    insert_sql,
    insert_values,
    mark_saved,
    new_row_fields,
    placeholder,
    qn,
    save_new,
    take_keys,
    update_sql,
    update_values,
)

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
    queue = current_queue()
    if queue is not None and len(events) <= QUEUED_EVENTS_MAX:
        # Inside the order path's deferred writes: one multi-row INSERT in the flush's round trip.
        fields = new_row_fields(ExecutionEvent)
        values = [value for event in events for value in insert_values(event, fields)]
        queue.add(_events_insert_sql(len(events), connection.vendor), values)
        return
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


QUEUED_EVENTS_MAX = 20


@lru_cache(maxsize=QUEUED_EVENTS_MAX)
def _events_insert_sql(rows: int, vendor: str) -> str:
    fields = new_row_fields(ExecutionEvent)
    row = f"({', '.join('%s' for _ in fields)})"
    return (
        f"INSERT INTO {qn(ExecutionEvent._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES {', '.join(row for _ in range(rows))}"
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
    queue = current_queue()
    stale = InvalidTransition(
        f"{type(obj).__name__} #{obj.pk} is no longer {from_status!r}: another writer changed it",
        details={"from": from_status, "to": to_status},
    )
    event._subject = obj  # type: ignore[attr-defined]
    if queue is not None:
        # The order path's deferred writes: sent with the others at the block's end; a row that
        # moved meanwhile raises `stale` there, inside the transaction (which rolls back whole).
        model: type[models.Model] = type(obj)
        key = tuple(names)
        if not queue.merge_into_insert(obj, from_status=from_status):  # a row new in this queue: one INSERT
            sql = update_sql(model, key, connection.vendor, compare_status=True)
            queue.add(sql, [*update_values(obj, key), obj.pk, from_status], error=lambda: stale)
        if batch is not None:
            batch.append(event)
        else:
            insert_events([event])
        return event
    # Outside a batch on PostgreSQL the event rides in the UPDATE's round trip (a CTE that
    # inserts it only if the compare-and-set matched); elsewhere it follows the UPDATE.
    together = batch is None and connection.vendor == "postgresql"
    if _compare_and_set(obj, tuple(names), from_status, event if together else None) != 1:
        obj.status = from_status
        raise stale
    if batch is not None:
        batch.append(event)
    elif not together:
        event.save()
    return event


@lru_cache(maxsize=256)
def _cas_with_event_sql(model: type[models.Model], names: tuple[str, ...], vendor: str) -> str:
    fields = new_row_fields(ExecutionEvent)
    pk = qn(model._meta.pk.column)
    return (
        f"WITH changed AS ({update_sql(model, names, vendor, compare_status=True)} RETURNING {pk}) "
        f"INSERT INTO {qn(ExecutionEvent._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"SELECT {', '.join(placeholder(f) for f in fields)} FROM changed RETURNING id"
    )


def _compare_and_set(obj: Any, names: tuple[str, ...], from_status: str, event: ExecutionEvent | None) -> int:
    """`UPDATE ... SET <names> WHERE pk = ... AND status = <from_status>`; with `event`, the
    event is inserted by the same statement for the row it updated. Returns the rows updated."""
    model: type[models.Model] = type(obj)
    params = [*update_values(obj, names), obj.pk, from_status]
    if event is None:
        sql = update_sql(model, names, connection.vendor, compare_status=True)
    else:
        sql = _cas_with_event_sql(model, names, connection.vendor)
        params += insert_values(event, new_row_fields(ExecutionEvent))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
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
    two statements elsewhere; inside `deferred_writes()` with a key taken ahead, queued with the
    block's other writes. Outside an event batch otherwise (the order path's reserve step)."""
    status = obj.status  # type: ignore[attr-defined]
    if status not in type(obj).TRANSITIONS:  # type: ignore[attr-defined]
        raise InvalidTransition(f"{type(obj).__name__} cannot be created as {status!r}.", details={"to": status})
    opts = obj._meta
    event = ExecutionEvent(
        account=account,
        kind=f"{opts.model_name}.{status}",
        subject_type=opts.model_name or "",
        to_status=status,
        message=message,
        data=data or {},
    )
    queue = current_queue()
    if queue is not None and (obj.pk is not None or take_keys([obj])):
        # Inside deferred writes with a key taken ahead: the row and its event go with the
        # block's other writes, in its one round trip.
        save_new(obj)
        event.subject_id = obj.pk
        batch = getattr(_batches, "events", None)
        if batch is not None:
            batch.append(event)
        else:
            insert_events([event])
        return event
    if getattr(_batches, "events", None) is not None:
        raise RuntimeError("create_audited writes its event at once: not inside batched_events()")
    values = insert_values(obj, new_row_fields(type(obj)))
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            mark_saved(obj, insert_returning_key(cursor, type(obj), values))
            event.subject_id = obj.pk
            event.save()
            return event
        event_fields = _creation_event_fields()
        cursor.execute(_create_with_event_sql(type(obj)), [*values, *insert_values(event, event_fields)])
        subject_id, event_id = cursor.fetchone()
    mark_saved(obj, subject_id)
    event.subject_id = subject_id
    mark_saved(event, event_id)
    return event


def _creation_event_fields() -> tuple[Any, ...]:
    return tuple(f for f in new_row_fields(ExecutionEvent) if f.name != "subject_id")


@lru_cache(maxsize=32)
def _create_with_event_sql(model: type[models.Model]) -> str:
    """PostgreSQL: `WITH created AS (INSERT ... RETURNING id) INSERT INTO <events> ... FROM created`."""
    fields = _creation_event_fields()
    pk = qn(model._meta.pk.column)
    return (
        f"WITH created AS ({insert_sql(model, 'postgresql')}) "
        f"INSERT INTO {qn(ExecutionEvent._meta.db_table)} "
        f"({', '.join(qn(f.column) for f in fields)}, {qn('subject_id')}) "
        f"SELECT {', '.join(placeholder(f) for f in fields)}, created.{pk} FROM created "
        f"RETURNING {qn('subject_id')}, {qn('id')}"
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


# --------------------------------------------------------------------------- tuple-based bulk paths
# For writers of thousands of rows (the paper sweep): events as plain tuples, no model objects.

# One event as a tuple in EVENT_COLUMNS order; `data` is already JSON text.
EventRow = tuple[int | None, str, str, int | None, str, str, str, str, datetime]
_encode_json = DjangoJSONEncoder().encode  # what ExecutionEvent.data's encoder writes


def event_row(
    *,
    account_id: int | None,
    kind: str,
    subject_type: str = "",
    subject_id: int | None = None,
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    at: datetime,
) -> EventRow:
    """An event as a tuple (what `insert_event_rows` writes): the cheap way to build thousands."""
    text = _encode_json(data) if data else "{}"
    return (account_id, kind, subject_type, subject_id, from_status, to_status, message, text, at)


def insert_event_rows(rows: list[EventRow]) -> None:
    """Insert events given as tuples, in the caller's transaction: COPY on PostgreSQL, one
    executemany INSERT elsewhere. No model object is built."""
    if not rows:
        return
    table = connection.ops.quote_name(ExecutionEvent._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(EVENT_COLUMNS))
        adapt = connection.ops.adapt_datetimefield_value  # stored as the ORM stores it (naive UTC text)
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(EVENT_COLUMNS)}) VALUES ({placeholders})",
            [(*row[:8], adapt(row[8])) for row in rows],
        )


def claim_transition(
    model: type[models.Model],
    *,
    pks: list[int],
    from_status: str,
    to_status: str,
    now: datetime,
    values: dict[str, Any] | None = None,
    message: str = "",
) -> list[tuple[int, int]]:
    """Move the rows of `pks` that are still `from_status` and not held by another transaction
    to `to_status`, audited (one event per row moved, written as tuples). Exactly once across
    concurrent callers: a row held by another claimer is skipped (SKIP LOCKED), and a row it
    moved meanwhile no longer matches `from_status` when re-checked under the lock. Call inside
    a transaction. `values`: further fields set on every row. Returns (pk, account_id) moved.

    PostgreSQL: one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`.
    Elsewhere (SQLite serialises writers): a SELECT, then the UPDATE of what it found."""
    if to_status not in model.TRANSITIONS.get(from_status, frozenset()):  # type: ignore[attr-defined]
        raise InvalidTransition(
            f"{model.__name__} cannot go from {from_status!r} to {to_status!r}.",
            details={"from": from_status, "to": to_status},
        )
    if not pks:
        return []
    changes: dict[str, Any] = {"status": to_status, **(values or {})}
    if any(f.name == "updated_at" for f in model._meta.concrete_fields):
        changes["updated_at"] = now
    if connection.vendor == "postgresql":
        moved = _claim_sql(model, pks=pks, from_status=from_status, changes=changes)
    else:
        moved = list(
            model._default_manager.select_for_update(skip_locked=True)
            .filter(pk__in=pks, status=from_status)
            .values_list("pk", "account_id")
        )
        updated = model._default_manager.filter(pk__in=[pk for pk, _ in moved], status=from_status).update(**changes)
        if updated != len(moved):
            raise InvalidTransition(f"{model.__name__} rows left {from_status!r} while being claimed")
    subject_type = model._meta.model_name or ""
    kind = f"{subject_type}.{to_status}"
    insert_event_rows(
        [(account_id, kind, subject_type, pk, from_status, to_status, message, "{}", now) for pk, account_id in moved]
    )
    return moved


def _claim_sql(
    model: type[models.Model], *, pks: list[int], from_status: str, changes: dict[str, Any]
) -> list[tuple[int, int]]:
    opts = model._meta
    qn = connection.ops.quote_name
    table = qn(opts.db_table)
    assignments, params = [], []
    for name, value in changes.items():
        field = opts.get_field(name)
        assert isinstance(field, models.Field)
        assignments.append(f"{qn(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} WHERE id IN "
        f"(SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s ORDER BY id FOR UPDATE SKIP LOCKED) "
        "RETURNING id, account_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, list(pks), from_status])
        return [(int(pk), int(account_id)) for pk, account_id in cursor.fetchall()]


def transition_row(
    obj: Any,
    *,
    to_status: str,
    account_id: int,
    at: datetime,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> EventRow:
    """`transition_unsaved` for writers of thousands of rows: check the table, set the status
    (and `updated_at`) in memory, and return the event as a tuple. The caller saves the row and
    inserts the events (`insert_event_rows`) in the same transaction; a row not inserted yet has
    no key here: the caller sets the tuple's subject_id once it has one."""
    check_transition(obj, to_status)
    from_status = obj.status
    obj.status = to_status
    if hasattr(obj, "updated_at"):
        obj.updated_at = at
    subject_type = obj._meta.model_name or ""
    return event_row(
        account_id=account_id,
        kind=f"{subject_type}.{to_status}",
        subject_type=subject_type,
        subject_id=obj.pk,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data,
        at=at,
    )
