"""The order path's locking reads: one round trip each (selectors for reserve and apply).

Each step of the order path starts by locking the account row (one writer per account) and
reading what it judges against: the lock, the positions, the reserved margin, the last entry
were three to four ORM statements, each its own round trip. Here they are two statements:

    SELECT 1 FROM accounts_account WHERE id = %s FOR UPDATE;          -- the lock, first
    SELECT a.<account>, <reserved margin>, <last entry>, p.<position>
    FROM accounts_account a LEFT JOIN execution_position p ON ... WHERE a.id = %s

sent together on PostgreSQL (psycopg's pipeline mode: one round trip, the transaction's BEGIN
included). They must stay two statements: under READ COMMITTED a statement reads from the
snapshot it started with, so a read in the same statement as a lock that had to wait would not
see what the lock's previous holder committed (two orders would both spend the same margin, or
both open the same position). The second statement starts after the first one returned its
lock, so it sees everything committed before.

A paper order (reserve, fill and booking in one transaction) also locks the open position it
books on, between the two: a third statement in the same round trip.

SQLite has no row locks (its transactions take the database's write lock up front): there the
lock statement is skipped and the read runs alone.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, models

from accounts.models import Account
from accounts.row_sql import RowReader, convert_value, qn
from execution.models import (
    ACTIVE_PROTECTIVE,
    TRADE_IN_FLIGHT,
    TRADE_IN_FLIGHT_OR_FILLED,
    PendingOrder,
    Position,
    PositionStatus,
    Trade,
    TradeReason,
)

_ACCOUNT = RowReader(Account, "a")
_POSITION = RowReader(Position, "p")


@dataclass(frozen=True)
class ReserveState:
    """The account (locked) and what the risk checks judge an order against."""

    account: Account
    positions: list[Position]  # open, every symbol
    reserved_margin: Decimal  # held by intents in flight (and, with `balance_as_of`, filled since)
    last_entry_at: datetime | None  # the last entry intent (only read when the account has a cooldown)
    keys: dict[type[models.Model], list[int]] = field(default_factory=dict)  # taken ahead (keys_for)


def _locked_read(
    account_id: int, sql: str, params: list[Any], *, position_symbol: str | None = None
) -> list[tuple[Any, ...]]:
    """Lock the account row (and, with `position_symbol`, the account's open position in that
    symbol), then run `sql` in a statement of its own (see the module's note): one round trip
    on PostgreSQL (pipeline mode), the read alone on SQLite. Goes through Django's cursors, so
    query logging and execute wrappers see every statement."""
    if not connection.features.has_select_for_update:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    locks: list[tuple[str, list[Any]]] = [
        (f"SELECT 1 FROM {qn(Account._meta.db_table)} WHERE id = %s FOR UPDATE", [account_id])
    ]
    if position_symbol is not None:
        # After the account's lock (the order every writer takes them in), before the read: a
        # mark committed by the marker (which takes no account lock) while this lock waited is
        # what the read sees, and the marker's next write waits for this transaction.
        locks.append(
            (
                f"SELECT 1 FROM {qn(Position._meta.db_table)} WHERE account_id = %s AND symbol = %s "
                "AND status = %s FOR UPDATE",
                [account_id, position_symbol, PositionStatus.OPEN],
            )
        )
    connection.ensure_connection()
    raw = connection.connection
    with ExitStack() as cursors:
        locking = [cursors.enter_context(connection.cursor()) for _ in locks]
        reading = cursors.enter_context(connection.cursor())
        with connection.wrap_database_errors, raw.pipeline():
            for cursor, (lock, lock_params) in zip(locking, locks, strict=True):
                cursor.execute(lock, lock_params)
            reading.execute(sql, params)
        with connection.wrap_database_errors:
            return list(reading.fetchall())


def _in(values: frozenset[str] | set[str] | tuple[str, ...]) -> tuple[str, list[str]]:
    ordered = sorted(values)
    return ", ".join("%s" for _ in ordered), ordered


def _active_legs() -> tuple[str, list[str]]:
    """A column: how many active protective legs the joined position `p` has. Legs are written
    only under the account lock, so the count holds for the transaction (a sweep's claim moves a
    leg from pending to triggered, both active); 0 spares the ledger a look for legs to cancel."""
    active, params = _in(ACTIVE_PROTECTIVE)
    orders = qn(PendingOrder._meta.db_table)
    return f"(SELECT COUNT(*) FROM {orders} o WHERE o.position_id = p.id AND o.status IN ({active}))", params


def _keys_cte(*, trade: bool, position: bool, legs: int) -> tuple[str, list[Any]]:
    """PostgreSQL: `WITH k AS MATERIALIZED (SELECT nextval(...) ...)`: the keys of the rows a
    step may insert, taken once (not per joined row)."""
    columns = [
        f"CASE WHEN %s THEN {_next_key(Trade)} END",
        f"CASE WHEN %s THEN {_next_key(Position)} END",
        f"CASE WHEN %s THEN {_next_key(PendingOrder)} END",
        f"CASE WHEN %s THEN {_next_key(PendingOrder)} END",
    ]
    return f"WITH k AS MATERIALIZED (SELECT {', '.join(columns)}) ", [trade, position, legs >= 1, legs >= 2]


def _taken(values: tuple[Any, ...]) -> dict[type[models.Model], list[int]]:
    trade, position, *legs = values
    return {
        Trade: [trade] if trade is not None else [],
        Position: [position] if position is not None else [],
        PendingOrder: [leg for leg in legs if leg is not None],
    }


def lock_for_reserve(
    account_id: int,
    *,
    balance_as_of: datetime | None,
    keys_for: tuple[bool, int] | None = None,
    books_in: str | None = None,
) -> ReserveState:
    """Lock the account and read its open positions, the margin its unbooked intents hold
    (those in flight; with a venue balance read at `balance_as_of`, also those filled since)
    and, for an account with a cooldown, when its last entry was made. One round trip.

    `keys_for` (may open a position, legs): on PostgreSQL also take ahead the keys of the rows
    a paper order may insert in this same transaction (its intent, a position, its legs).
    `books_in` (a symbol): the transaction will also book a fill there (paper), so the open
    position in it is locked too, as `lock_for_apply` does: the ledger writes the position back
    with the mark it read, and a mark-to-market committed after an unlocked read would be
    reverted (the marker takes no account lock)."""
    trades = qn(Trade._meta.db_table)
    in_flight, in_flight_params = _in(TRADE_IN_FLIGHT)
    unbooked = f"t.status IN ({in_flight})"
    unbooked_params: list[Any] = list(in_flight_params)
    if balance_as_of is not None:
        unbooked = f"({unbooked} OR (t.status = %s AND t.filled_at >= %s))"
        unbooked_params += ["filled", balance_as_of]
    entries, entry_params = _in(TRADE_IN_FLIGHT_OR_FILLED)
    legs_column, legs_params = _active_legs()
    keys, keys_columns, keys_join = "", "", ""
    keys_params: list[Any] = []
    if keys_for is not None and connection.features.has_select_for_update:
        keys, keys_params = _keys_cte(trade=True, position=keys_for[0], legs=keys_for[1])
        keys_columns, keys_join = ", k.*", " CROSS JOIN k"
    sql = (
        f"{keys}SELECT {_ACCOUNT.columns()}, "
        f"(SELECT SUM(t.reserved_margin) FROM {trades} t WHERE t.account_id = a.id AND {unbooked}), "
        f"CASE WHEN a.cooldown_seconds > 0 THEN (SELECT MAX(t.created_at) FROM {trades} t "
        f"WHERE t.account_id = a.id AND t.reason = %s AND t.status IN ({entries})) END, "
        f"{_POSITION.columns()}, {legs_column}{keys_columns} "
        f"FROM {qn(Account._meta.db_table)} a{keys_join} "
        f"LEFT JOIN {qn(Position._meta.db_table)} p ON p.account_id = a.id AND p.status = %s "
        "WHERE a.id = %s ORDER BY p.id"
    )
    params = [
        *keys_params,
        *unbooked_params,
        TradeReason.ENTRY,
        *entry_params,
        *legs_params,
        PositionStatus.OPEN,
        account_id,
    ]
    rows = _locked_read(account_id, sql, params, position_symbol=books_in)
    if not rows:
        raise Account.DoesNotExist(f"account {account_id} does not exist")
    width = _ACCOUNT.width
    first = rows[0]
    reserved = convert_value(Trade._meta.get_field("reserved_margin"), first[width])
    last_entry = convert_value(Trade._meta.get_field("created_at"), first[width + 1])
    start, end = width + 2, width + 2 + _POSITION.width
    positions = [_with_legs(_POSITION.build(row[start:end]), row[end]) for row in rows if row[start] is not None]
    return ReserveState(
        account=_ACCOUNT.build(first[:width]),
        positions=positions,
        reserved_margin=reserved if reserved is not None else Decimal("0"),
        last_entry_at=last_entry,
        keys=_taken(tuple(first[end + 1 :])) if keys else {},
    )


def _with_legs(position: Position, active_legs: int) -> Position:
    position.active_legs_under_lock = int(active_legs)  # type: ignore[attr-defined]  # see _active_legs
    return position


@dataclass(frozen=True)
class ApplyState:
    account: Account
    position: Position | None  # the open position in the symbol, locked
    keys: dict[type[models.Model], list[int]]  # keys taken ahead for the rows the step may insert


_sequences: dict[tuple[str, str], str] = {}


def _next_key(model: type[models.Model]) -> str:
    """`nextval('<the key's sequence>'::regclass)`; the sequence's name is looked up once per
    process (pg_get_serial_sequence costs a catalog search on every call)."""
    table, column = model._meta.db_table, model._meta.pk.column
    sequence = _sequences.get((connection.alias, table))
    if sequence is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
            sequence = _sequences[(connection.alias, table)] = str(cursor.fetchone()[0])
    return f"nextval('{sequence}'::regclass)"


def lock_for_apply(account_id: int, symbol: str, *, opens_side: str | None, legs: int) -> ApplyState:
    """Lock the account, then read it and its open position in `symbol` (if any), locking the
    position too: one round trip. (The position row is locked so that a writer that does not
    take the account lock, marking to market, waits instead of being overwritten.)

    On PostgreSQL the same read takes, ahead, the keys of the rows the step may insert: a new
    position when the fill may open one on `opens_side` (LONG/SHORT; None: a reduce-only fill)
    and `legs` protective orders, so that the step's writes can all be sent at its end, in one
    round trip (`accounts.row_sql.deferred_writes`). A key taken and not used leaves a gap."""
    positions = qn(Position._meta.db_table)
    accounts = qn(Account._meta.db_table)
    legs_column, legs_params = _active_legs()
    params: list[Any] = [*legs_params, symbol, PositionStatus.OPEN, account_id]
    keys, keys_columns, keys_join = "", "", ""
    if connection.features.has_select_for_update:
        # FOR UPDATE cannot reach the nullable side of an outer join: a LATERAL sub-select.
        joined = (
            f"LEFT JOIN LATERAL (SELECT * FROM {positions} WHERE account_id = a.id AND symbol = %s "
            "AND status = %s FOR UPDATE) p ON TRUE"
        )
        keys, keys_params = _keys_cte(trade=False, position=opens_side is not None, legs=legs)
        keys_columns, keys_join = ", k.*", " CROSS JOIN k"
        params = [*keys_params, *params]
    else:
        joined = f"LEFT JOIN {positions} p ON p.account_id = a.id AND p.symbol = %s AND p.status = %s"
    sql = (
        f"{keys}SELECT {_ACCOUNT.columns()}, {_POSITION.columns()}, {legs_column}{keys_columns} "
        f"FROM {accounts} a{keys_join} {joined} WHERE a.id = %s"
    )
    rows = _locked_read(account_id, sql, params)
    if not rows:
        raise Account.DoesNotExist(f"account {account_id} does not exist")
    row = rows[0]
    width = _ACCOUNT.width
    end = width + _POSITION.width
    position = _with_legs(_POSITION.build(row[width:end]), row[end]) if row[width] is not None else None
    taken = _taken(tuple(row[end + 1 :])) if keys else {}
    return ApplyState(account=_ACCOUNT.build(row[:width]), position=position, keys=taken)
