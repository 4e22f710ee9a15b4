"""Single-row statements without the ORM's per-call query building, for the order path.

Django compiles every queryset and `save()` anew (about half a millisecond per statement on the
project's machine); the hot statements here are plain SQL text built from the model's fields,
with Django's own value preparation (`get_db_prep_save`) and result converters
(`get_db_converters`), so a row reads and writes exactly as the ORM would. The SQL text is the
same on every call, so with server-side binding PostgreSQL prepares it once per connection.

Portable SQL only (PostgreSQL and SQLite); a caller that needs a PostgreSQL-only form (a
data-modifying CTE, `FOR UPDATE`) says so where it builds it. Status columns are never written
here: `accounts.audit` is the one place that changes a status (`update_row` refuses one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)
Converter = Callable[[Any, Any, Any], Any]


def qn(name: str) -> str:
    return str(connection.ops.quote_name(name))


def placeholder(field: models.Field[Any, Any]) -> str:
    """`%s`, with the column's type on PostgreSQL: a parameter in a SELECT list (INSERT ...
    SELECT ... FROM a CTE) has no column to take its type from under server-side binding."""
    if connection.vendor == "postgresql":
        return f"%s::{field.db_type(connection)}"
    return "%s"


def insert_columns(obj: models.Model) -> tuple[list[models.Field[Any, Any]], list[Any]]:
    """The columns of a new row (its key left to the database) and their prepared values; sets
    `auto_now`/`auto_now_add` values on `obj` as `save()` would."""
    fields = [f for f in obj._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    return fields, values


def mark_saved(obj: models.Model, pk: int) -> None:
    """`obj` was inserted with key `pk`: make it look like a row the ORM saved."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


def insert_row(obj: M) -> M:
    """INSERT one new row (RETURNING its key: PostgreSQL, SQLite >= 3.35)."""
    fields, values = insert_columns(obj)
    pk = obj._meta.pk
    assert pk is not None
    sql = (
        f"INSERT INTO {qn(obj._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join('%s' for _ in fields)}) RETURNING {qn(pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        mark_saved(obj, cursor.fetchone()[0])
    return obj


def update_row(obj: models.Model, fields: Sequence[str]) -> None:
    """UPDATE `fields` (and `updated_at`, if the model has one) of one saved row by key: what
    `save(update_fields=...)` writes, without its query building or signals."""
    if "status" in fields:
        raise ValueError("a status changes only through accounts.audit (transition)")
    opts = obj._meta
    names = list(fields)
    if any(f.name == "updated_at" for f in opts.concrete_fields) and "updated_at" not in names:
        names.append("updated_at")
    chosen = [opts.get_field(name) for name in names]
    concrete = [f for f in chosen if isinstance(f, models.Field)]
    values = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in concrete]
    pk = opts.pk
    assert pk is not None
    sql = (
        f"UPDATE {qn(opts.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in concrete)} "
        f"WHERE {qn(pk.column)} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, obj.pk])
        if cursor.rowcount != 1:
            raise opts.model.DoesNotExist(f"{opts.model.__name__} #{obj.pk} is gone")  # type: ignore[attr-defined]


class RowReader:
    """Read a model's rows out of a wider raw SELECT: `columns()` lists its columns under a table
    alias, `build(values)` turns that slice of a result row into a model instance, through the
    same converters the ORM applies (decimals and datetimes on SQLite, decrypted secrets, ...)."""

    def __init__(self, model: type[models.Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self._converters: dict[str, list[list[tuple[Converter, Any]]]] = {}

    @property
    def width(self) -> int:
        return len(self.fields)

    def columns(self) -> str:
        return ", ".join(f"{self.alias}.{qn(f.column)}" for f in self.fields)

    def converters(self) -> list[list[tuple[Converter, Any]]]:
        found = self._converters.get(connection.vendor)
        if found is None:
            found = []
            for field in self.fields:
                column = field.get_col(self.alias)
                chain = [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]  # type: ignore[attr-defined]
                found.append([(converter, column) for converter in chain])
            self._converters[connection.vendor] = found
        return found

    def convert(self, values: Sequence[Any]) -> list[Any]:
        converted = list(values)
        for index, chain in enumerate(self.converters()):
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
