"""Single-row statements without the ORM's per-call query building, for the order path.

Django compiles every queryset and `save()` anew (about half a millisecond per statement on the
project's machine); the hot statements here are plain SQL text built once per model (and field
list, and database vendor) and cached, with Django's own value preparation (`get_db_prep_save`)
and result converters (`get_db_converters`), so a row reads and writes exactly as the ORM would.
The SQL text is the same on every call, so with server-side binding PostgreSQL prepares it once
per connection.

Portable SQL only (PostgreSQL and SQLite); a caller that needs a PostgreSQL-only form (a
data-modifying CTE, `FOR UPDATE`) says so where it builds it. Status columns are never written
here: `accounts.audit` is the one place that changes a status (`update_row` refuses one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

M = TypeVar("M", bound=models.Model)
Converter = Callable[[Any, Any, Any], Any]
Fields = tuple[models.Field[Any, Any], ...]


def qn(name: str) -> str:
    return str(connection.ops.quote_name(name))


def placeholder(field: models.Field[Any, Any]) -> str:
    """`%s`, with the column's type on PostgreSQL: a parameter in a SELECT list (INSERT ...
    SELECT ... FROM a CTE) has no column to take its type from under server-side binding."""
    if connection.vendor == "postgresql":
        return f"%s::{field.db_type(connection)}"
    return "%s"


def new_row_fields(model: type[models.Model]) -> Fields:
    """The columns of a new row: every concrete field but the key (left to the database)."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


# Fields whose `get_db_prep_save` returns a value of this exact type unchanged on PostgreSQL
# (its backend adapts decimals and aware datetimes as they are), and None as None.
_AS_IS: dict[type[models.Field[Any, Any]], type] = {
    models.CharField: str,
    models.TextField: str,
    models.BooleanField: bool,
    models.DateTimeField: datetime,
    models.DecimalField: Decimal,
}  # not the integer fields: Django wraps their values in typed Int2/Int4/Int8 for server-side binding


def prepared_values(obj: models.Model, fields: Iterable[models.Field[Any, Any]], *, add: bool) -> list[Any]:
    """`f.get_db_prep_save(f.pre_save(obj, add))` for each field, as `save()` prepares them,
    without Django's per-value preparation where it is the identity (PostgreSQL: a str, bool,
    finite Decimal, aware datetime or None in a plain field of that kind). Anything else, a NaN
    or a naive datetime included, takes Django's own path (which refuses or converts it)."""
    db = connections[DEFAULT_DB_ALIAS]  # once, not through the proxy per value
    fast = db.vendor == "postgresql"
    values = []
    for field in fields:
        value = field.pre_save(obj, add)
        kind = _AS_IS.get(type(field)) if fast else None
        values.append(value if kind is not None and _as_is(value, kind) else field.get_db_prep_save(value, db))
    return values


def _as_is(value: Any, kind: type) -> bool:
    if value is None:
        return True
    if type(value) is not kind:  # exactly: a subclass may prepare otherwise
        return False
    if isinstance(value, Decimal):
        return value.is_finite()  # a NaN or an infinity: Django refuses it
    if isinstance(value, datetime):
        return value.tzinfo is not None  # naive: Django converts it, with a warning
    return True


def insert_values(obj: models.Model, fields: Fields) -> list[Any]:
    """Prepared values of a new row; sets `auto_now`/`auto_now_add` values on `obj` as `save()` would."""
    return prepared_values(obj, fields, add=True)


def insert_columns(obj: models.Model) -> tuple[list[models.Field[Any, Any]], list[Any]]:
    fields = new_row_fields(type(obj))
    return list(fields), insert_values(obj, fields)


def mark_saved(obj: models.Model, pk: int) -> None:
    """`obj` was inserted with key `pk`: make it look like a row the ORM saved."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


@lru_cache(maxsize=64)
def insert_sql(model: type[models.Model], vendor: str, returning: bool = True) -> str:
    """INSERT of one new row, RETURNING its key when `returning` (PostgreSQL; SQLite >= 3.35:
    see `insert_returning_key` for the databases without it)."""
    fields = new_row_fields(model)
    pk = model._meta.pk
    assert pk is not None
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join('%s' for _ in fields)})"
    )
    return f"{sql} RETURNING {qn(pk.column)}" if returning else sql


def insert_returning_key(cursor: Any, model: type[models.Model], values: list[Any]) -> int:
    """INSERT one new row of `model` (its prepared `values`) and return its key: by RETURNING
    where the database has it (`can_return_columns_from_insert`: PostgreSQL, SQLite >= 3.35),
    else the cursor's `lastrowid` (an older SQLite: the row's key, as the ORM takes it there)."""
    returning = bool(connection.features.can_return_columns_from_insert)
    cursor.execute(insert_sql(model, connection.vendor, returning), values)
    return int(cursor.fetchone()[0]) if returning else int(cursor.lastrowid)


def insert_row(obj: M) -> M:
    """INSERT one new row and give `obj` its key."""
    values = insert_values(obj, new_row_fields(type(obj)))
    with connection.cursor() as cursor:
        mark_saved(obj, insert_returning_key(cursor, type(obj), values))
    return obj


@lru_cache(maxsize=256)
def update_fields_of(model: type[models.Model], names: tuple[str, ...]) -> Fields:
    """The fields an update of `names` writes: those, and `updated_at` if the model has one."""
    opts = model._meta
    wanted = list(dict.fromkeys(names))
    if any(f.name == "updated_at" for f in opts.concrete_fields) and "updated_at" not in wanted:
        wanted.append("updated_at")
    fields = [opts.get_field(name) for name in wanted]
    return tuple(f for f in fields if isinstance(f, models.Field))


@lru_cache(maxsize=256)
def update_sql(model: type[models.Model], names: tuple[str, ...], vendor: str, *, compare_status: bool) -> str:
    """UPDATE `names` of one row by key; with `compare_status`, only while its status is still
    the one given (the compare-and-set of `accounts.audit.transition`)."""
    opts = model._meta
    pk = opts.pk
    assert pk is not None
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in update_fields_of(model, names))
    where = f"{qn(pk.column)} = %s" + (f" AND {qn('status')} = %s" if compare_status else "")
    return f"UPDATE {qn(opts.db_table)} SET {assignments} WHERE {where}"


def update_values(obj: models.Model, names: tuple[str, ...]) -> list[Any]:
    return prepared_values(obj, update_fields_of(type(obj), names), add=False)


def update_row(obj: models.Model, fields: Sequence[str]) -> None:
    """UPDATE `fields` (and `updated_at`, if the model has one) of one saved row by key: what
    `save(update_fields=...)` writes, without its query building or signals."""
    names = tuple(fields)
    if "status" in names:
        raise ValueError("a status changes only through accounts.audit (transition)")
    sql = update_sql(type(obj), names, connection.vendor, compare_status=False)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*update_values(obj, names), obj.pk])
        if cursor.rowcount != 1:
            raise type(obj).DoesNotExist(f"{type(obj).__name__} #{obj.pk} is gone")  # type: ignore[attr-defined]


class RowReader:
    """Read a model's rows out of a wider raw SELECT: `columns()` lists its columns under a table
    alias, `build(values)` turns that slice of a result row into a model instance, through the
    same converters the ORM applies (decimals and datetimes on SQLite, decrypted secrets, ...)."""

    def __init__(self, model: type[models.Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self._converters: dict[str, list[tuple[int, list[tuple[Converter, Any]]]]] = {}
        self._columns: dict[str, str] = {}

    @property
    def width(self) -> int:
        return len(self.fields)

    def columns(self) -> str:
        found = self._columns.get(connection.vendor)
        if found is None:
            found = self._columns[connection.vendor] = ", ".join(f"{self.alias}.{qn(f.column)}" for f in self.fields)
        return found

    def converters(self) -> list[tuple[int, list[tuple[Converter, Any]]]]:
        """(column index, its converters) for the columns that have any."""
        found = self._converters.get(connection.vendor)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                chain = [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]  # type: ignore[attr-defined]
                if chain:
                    found.append((index, [(converter, column) for converter in chain]))
            self._converters[connection.vendor] = found
        return found

    def convert(self, values: Sequence[Any]) -> list[Any]:
        converted = list(values)
        for index, chain in self.converters():
            for converter, column in chain:
                converted[index] = converter(converted[index], column, connection)
        return converted

    def build(self, values: Sequence[Any]) -> Any:
        return self.model.from_db(connection.alias, None, self.convert(values))  # type: ignore[arg-type]


def convert_value(field: models.Field[Any, Any], value: Any) -> Any:
    """One computed column (an aggregate, say) read as `field` would read it."""
    column = field.get_col(field.model._meta.db_table)
    converters = [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]  # type: ignore[attr-defined]
    for converter in converters:
        value = converter(value, column, connection)
    return value


# --------------------------------------------------------------------------- deferred writes


class WriteQueue:
    """Writes whose results nothing reads before the transaction ends, sent together.

    Inside `deferred_writes()` on PostgreSQL, `save_new`, `save_fields` and the audited
    transitions queue their statements here instead of sending each, and the block's end sends
    them all in one pipeline (one round trip; each still its own statement, run in order, so a
    position is closed before its successor is inserted). A new row's key comes from keys taken
    ahead (`keys`, e.g. `nextval` read with the account lock); without one, it is inserted at
    once. A compare-and-set that matched no row raises its error at the flush, inside the
    transaction, which then rolls back whole."""

    def __init__(self, keys: dict[type[models.Model], list[int]]) -> None:
        self.keys = {model: list(found) for model, found in keys.items()}
        self.statements: list[tuple[str, list[Any], Callable[[], Exception] | None]] = []
        # New rows queued here: (model, key) -> (their statement's index, the status written).
        self._inserted: dict[tuple[type[models.Model], Any], tuple[int, Any]] = {}

    def add_insert(self, obj: models.Model, sql: str, params: list[Any]) -> None:
        self._inserted[(type(obj), obj.pk)] = (len(self.statements), getattr(obj, "status", None))
        self.add(sql, params)

    def merge_into_insert(self, obj: models.Model, *, from_status: Any = None) -> bool:
        """An update of a row inserted earlier in this queue becomes part of its INSERT (the
        row's values as they are now): one statement fewer, same rows. Only when the INSERT
        wrote `from_status` (a transition's compare-and-set then matches surely: nobody else
        can see the row before the flush). False: not queued here, the caller queues an UPDATE."""
        found = self._inserted.get((type(obj), obj.pk))
        if found is None or (from_status is not None and found[1] != from_status):
            return False
        index, _ = found
        sql, _params, error = self.statements[index]
        values = prepared_values(obj, obj._meta.concrete_fields, add=False)
        self.statements[index] = (sql, values, error)
        self._inserted[(type(obj), obj.pk)] = (index, getattr(obj, "status", None))
        return True

    def take_keys(self, model: type[models.Model], count: int) -> list[int] | None:
        available = self.keys.get(model, [])
        if len(available) < count:
            return None
        taken, self.keys[model] = available[:count], available[count:]
        return taken

    def add(self, sql: str, params: list[Any], *, error: Callable[[], Exception] | None = None) -> None:
        """Queue a statement; `error`: it must change exactly one row, else this is raised."""
        self.statements.append((sql, params, error))

    def flush(self) -> None:
        if not self.statements:
            return
        connection.ensure_connection()
        raw = connection.connection
        statements, self.statements = self.statements, []
        self._inserted.clear()
        cursors = [connection.cursor() for _ in statements]
        try:
            with connection.wrap_database_errors, raw.pipeline():
                for cursor, (sql, params, _error) in zip(cursors, statements, strict=True):
                    cursor.execute(sql, params)
            for cursor, (_sql, _params, error) in zip(cursors, statements, strict=True):
                if error is not None and cursor.rowcount != 1:
                    raise error()
        finally:
            for cursor in cursors:
                cursor.close()


_queues = threading.local()


def current_queue() -> WriteQueue | None:
    queue: WriteQueue | None = getattr(_queues, "queue", None)
    return queue


@contextmanager
def deferred_writes(keys: dict[type[models.Model], list[int]] | None = None) -> Iterator[WriteQueue | None]:
    """Queue the block's writes and send them at its end in one round trip (PostgreSQL; see
    `WriteQueue`). Use inside the transaction, around code that reads nothing it wrote. On other
    databases the writes go at once, as without it."""
    if connection.vendor != "postgresql" or current_queue() is not None:
        yield current_queue()
        return
    queue = _queues.queue = WriteQueue(keys or {})
    try:
        yield queue
        queue.flush()
    finally:
        _queues.queue = None


@lru_cache(maxsize=64)
def insert_with_key_sql(model: type[models.Model], vendor: str) -> str:
    """INSERT of one new row whose key is given."""
    fields = model._meta.concrete_fields
    return (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join('%s' for _ in fields)})"
    )


def take_keys(objs: Sequence[models.Model]) -> bool:
    """Give `objs` (new rows of one model) keys taken ahead, if the current queue has enough:
    they can then refer to each other before they are written. False: no keys, nothing set."""
    queue = current_queue()
    if queue is None or not objs:
        return False
    keys = queue.take_keys(type(objs[0]), len(objs))
    if keys is None:
        return False
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
    return True


def save_new(obj: M) -> M:
    """Insert a new row: queued when it has a key taken ahead (`take_keys`) or one is
    available, else at once (`insert_row`)."""
    queue = current_queue()
    if queue is not None and (obj.pk is not None or take_keys([obj])):
        fields = obj._meta.concrete_fields
        values = prepared_values(obj, fields, add=True)
        queue.add_insert(obj, insert_with_key_sql(type(obj), connection.vendor), values)
        mark_saved(obj, obj.pk)
        return obj
    if queue is not None:
        # No key taken ahead: it is inserted now, so what was queued before it goes first (a
        # position closed before its successor opens: one open position per symbol).
        queue.flush()
    return insert_row(obj)


def save_fields(obj: models.Model, fields: Sequence[str]) -> None:
    """`update_row`, queued inside `deferred_writes()`."""
    queue = current_queue()
    if queue is None:
        update_row(obj, fields)
        return
    names = tuple(fields)
    if "status" in names:
        raise ValueError("a status changes only through accounts.audit (transition)")
    if queue.merge_into_insert(obj):
        return
    model = type(obj)
    queue.add(
        update_sql(model, names, connection.vendor, compare_status=False),
        [*update_values(obj, names), obj.pk],
        error=lambda: model.DoesNotExist(f"{model.__name__} #{obj.pk} is gone"),  # type: ignore[attr-defined]
    )
