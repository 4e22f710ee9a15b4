"""A bulk UPDATE that costs one statement and no per-row expression building.

Django's `bulk_update` builds a CASE WHEN per field per row, which at a few hundred rows costs
more Python time than the database spends. On PostgreSQL this writes
`UPDATE t SET f = v.f ... FROM unnest(%s::type[], ...) AS v(id, ...) WHERE t.id = v.id` instead
(one array per column); elsewhere it falls back to `bulk_update`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)

# Fields whose Python value psycopg adapts exactly as Django's get_db_prep_save would (Django
# returns these values unchanged on PostgreSQL): read straight from the object, which at a few
# thousand rows saves more time than the statement costs. Anything else (JSON, custom or
# encrypted fields) still goes through get_db_prep_save.
NATIVE_FIELDS = (
    models.AutoField,
    models.BigAutoField,
    models.BooleanField,
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.DecimalField,
    models.ForeignKey,
)


def db_value_getter(field: models.Field[Any, Any], *, add: bool) -> Callable[[models.Model], Any]:
    """How to read `field`'s database value from an object cheaply (`add`: an INSERT, where
    auto_now_add and auto_now fields take their value now, as `pre_save` does)."""
    attname = field.attname
    if type(field) is models.DateTimeField:  # aware datetimes (USE_TZ) are adapted as they are
        if add and (field.auto_now or field.auto_now_add):
            return lambda obj: field.pre_save(obj, True)  # sets and returns now, as a save would
        return lambda obj: getattr(obj, attname)
    # Exact types only: a subclass (an encrypted text field, say) may transform its value.
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    if type(field) in NATIVE_FIELDS and type(target) in NATIVE_FIELDS:
        return lambda obj: getattr(obj, attname)
    if add:
        return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), connection)
    return lambda obj: field.get_db_prep_save(getattr(obj, attname), connection)


def bulk_update_rows(model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]) -> int:
    if not objs:
        return 0
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_update(objs, list(fields))
    opts = model._meta
    columns: list[models.Field[Any, Any]] = []
    for name in fields:
        found = opts.get_field(name)
        assert isinstance(found, models.Field), f"{name} is not a concrete field"
        columns.append(found)
    qn = connection.ops.quote_name
    pk = opts.pk
    assert pk is not None
    types = [str(pk.db_type(connection)), *(str(f.db_type(connection)) for f in columns)]
    # One array parameter per column (unnest): a handful of parameters whatever the row count.
    arrays: list[list[Any]] = [[obj.pk for obj in objs]]
    getters = [db_value_getter(f, add=False) for f in columns]
    arrays += [[get(obj) for obj in objs] for get in getters]
    names = ", ".join(qn(c) for c in [pk.column, *(f.column for f in columns)])
    unnest = ", ".join(f"%s::{t}[]" for t in types)
    assignments = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in columns)
    sql = (
        f"UPDATE {qn(opts.db_table)} AS t SET {assignments} "
        f"FROM unnest({unnest}) AS v({names}) WHERE t.{qn(pk.column)} = v.{qn(pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return int(cursor.rowcount)


def bulk_insert_rows(model: type[M], objs: Sequence[M]) -> list[M]:
    """Insert rows and give them their primary keys.

    PostgreSQL: the keys come from the table's sequence in one query, and the rows go in with
    COPY (much cheaper than a large INSERT's parameters). Elsewhere: `bulk_create`.
    """
    if not objs:
        return list(objs)
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_create(objs, batch_size=250)
    opts = model._meta
    pk = opts.pk
    assert pk is not None
    qn = connection.ops.quote_name
    fields = [f for f in opts.concrete_fields if f is not pk]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [opts.db_table, pk.column, len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        for obj, new_id in zip(objs, ids, strict=True):
            obj.pk = new_id
            obj._state.adding = False
        columns = ", ".join(qn(c) for c in [pk.column, *(f.column for f in fields)])
        getters = [db_value_getter(f, add=True) for f in fields]
        with cursor.cursor.copy(f"COPY {qn(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row([obj.pk, *(get(obj) for get in getters)])
    return list(objs)
