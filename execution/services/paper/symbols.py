"""Which symbols the sweep has work in, and which shard of the sweep each symbol belongs to.

The lists cost a few index probes per symbol, not a read of every pending order or open
position: on PostgreSQL a "loose index scan" (a recursive query that jumps from one symbol to
the next on an index ordered by symbol). Elsewhere: the plain DISTINCT queries.

Sharding: with PAPER_SWEEP_SHARDS = N, symbol s belongs to shard crc32(s) mod N (stable across
processes and machines, unlike Python's `hash`); each shard's sweep sees only its symbols.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection
from dataclasses import dataclass

from django.db import connection

from execution.models import PendingOrder, PendingOrderStatus, Position, PositionStatus, WorkingType


@dataclass(frozen=True)
class PaperSymbols:
    pending: frozenset[str]  # symbols of pending paper orders
    contract: frozenset[str]  # those of them with a CONTRACT_PRICE order (they need the last price)
    positions: frozenset[str]  # symbols of open paper positions

    @property
    def all(self) -> frozenset[str]:
        return self.pending | self.positions

    def shard(self, shard: int, shards: int) -> PaperSymbols:
        """The part of the lists that belongs to `shard` of `shards`."""
        if shards <= 1:
            return self

        def keep(symbols: frozenset[str]) -> frozenset[str]:
            return frozenset(s for s in symbols if shard_of(s, shards) == shard)

        return PaperSymbols(pending=keep(self.pending), contract=keep(self.contract), positions=keep(self.positions))


def shard_of(symbol: str, shards: int) -> int:
    """The shard a symbol belongs to: stable across processes and machines."""
    return zlib.crc32(symbol.encode()) % shards if shards > 1 else 0


def paper_symbols() -> PaperSymbols:
    if connection.vendor == "postgresql":
        return _paper_symbols_sql()
    return _paper_symbols_orm()


def _loose_scan(name: str, table: str, condition: str) -> str:
    """A recursive CTE listing the distinct symbols of `table`'s rows matching `condition`: one
    index probe per symbol (ORDER BY symbol LIMIT 1 above the previous one). Only paper accounts:
    the account is looked at for the rows the probe walks, usually the first."""
    row = (
        f"SELECT t.symbol FROM {table} t WHERE {condition} {{after}}"
        " AND EXISTS (SELECT 1 FROM accounts_account a WHERE a.id = t.account_id AND a.is_paper_trading)"
        " ORDER BY t.symbol LIMIT 1"
    )
    return (
        f"{name}(symbol) AS (SELECT ({row.format(after='')}) "
        f"UNION ALL SELECT ({row.format(after=f'AND t.symbol > {name}.symbol')}) "
        f"FROM {name} WHERE {name}.symbol IS NOT NULL)"
    )


# The statuses are literals, so that the planner matches the partial indexes.
SYMBOLS_SQL = (
    "WITH RECURSIVE "
    + ", ".join(
        [
            _loose_scan("pending", "execution_pendingorder", "t.status = 'pending'"),
            _loose_scan(
                "contract", "execution_pendingorder", "t.status = 'pending' AND t.working_type = 'CONTRACT_PRICE'"
            ),
            _loose_scan("positions", "execution_position", "t.status = 'open'"),
        ]
    )
    + " SELECT 'pending', symbol FROM pending WHERE symbol IS NOT NULL"
    " UNION ALL SELECT 'contract', symbol FROM contract WHERE symbol IS NOT NULL"
    " UNION ALL SELECT 'positions', symbol FROM positions WHERE symbol IS NOT NULL"
)


def _paper_symbols_sql() -> PaperSymbols:
    found: dict[str, set[str]] = {"pending": set(), "contract": set(), "positions": set()}
    with connection.cursor() as cursor:
        cursor.execute(SYMBOLS_SQL)
        for which, symbol in cursor.fetchall():
            found[which].add(symbol)
    return PaperSymbols(
        pending=frozenset(found["pending"]),
        contract=frozenset(found["contract"]),
        positions=frozenset(found["positions"]),
    )


def _paper_symbols_orm() -> PaperSymbols:
    rows = (
        PendingOrder.objects.filter(status=PendingOrderStatus.PENDING, account__is_paper_trading=True)
        .order_by()  # the model's ordering would leak into DISTINCT
        .values_list("symbol", "working_type")
        .distinct()
    )
    pending, contract = set(), set()
    for symbol, working_type in rows:
        pending.add(symbol)
        if working_type == WorkingType.CONTRACT_PRICE:
            contract.add(symbol)
    positions = (
        Position.objects.filter(status=PositionStatus.OPEN, account__is_paper_trading=True)
        .order_by()
        .values_list("symbol", flat=True)
        .distinct()
    )
    return PaperSymbols(pending=frozenset(pending), contract=frozenset(contract), positions=frozenset(positions))


# One probe per symbol of the batch on the partial index `pendingorder_contract_symbols`; each
# stops at its first paper account's order.
CONTRACT_AMONG_SQL = """
    SELECT s.symbol FROM unnest(%s::varchar[]) AS s(symbol)
    WHERE EXISTS (
        SELECT 1 FROM execution_pendingorder t
        WHERE t.status = 'pending' AND t.working_type = 'CONTRACT_PRICE' AND t.symbol = s.symbol
          AND EXISTS (SELECT 1 FROM accounts_account a WHERE a.id = t.account_id AND a.is_paper_trading)
    )
"""


def contract_symbols_among(symbols: Collection[str]) -> frozenset[str]:
    """Those of `symbols` with a pending paper CONTRACT_PRICE order (they need the last price):
    a probe per given symbol, not the lists of every symbol (a price reaction's few symbols)."""
    if not symbols:
        return frozenset()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(CONTRACT_AMONG_SQL, [sorted(symbols)])
            return frozenset(symbol for (symbol,) in cursor.fetchall())
    rows = PendingOrder.objects.filter(
        status=PendingOrderStatus.PENDING,
        working_type=WorkingType.CONTRACT_PRICE,
        symbol__in=symbols,
        account__is_paper_trading=True,
    )
    return frozenset(rows.order_by().values_list("symbol", flat=True).distinct())
