"""Which stream process streams which live account: shards and leases (issue 12, item 2).

`aster_stream --shard K/N` streams the live accounts with `id % N == K` (live, with
credentials, not halted); the set is re-read every `refresh()`, so accounts that become live,
halted or deleted are picked up or dropped without a restart.

A lease in `StreamLease` makes sure no account is streamed by two processes at once, even
with overlapping shards or a process started twice. Every statement is a conditional write
whose row count says who won, with the database's clock (`Now()`), never a process's:

- renew: `UPDATE ... WHERE holder = me` (a lease taken over by another is not ours any more);
- take over: `UPDATE ... WHERE expires_at < now()` (PostgreSQL re-checks the condition on the
  row it waited for, so of two processes racing for a lapsed lease one matches, the other 0);
- new: `INSERT ... ON CONFLICT DO NOTHING` (the first insert holds it).

A dead holder's leases lapse `STREAM_LEASE_SECONDS` after its last renewal and are taken over
by the next refresh of another process. A process renews every third of that. On shutdown it
releases its leases (a DELETE of its own rows), so a restart takes them back at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Mod, Now
from django.utils import timezone

from accounts.models import Account, ApiVersion, TradingState
from execution.models import StreamLease


class ShardOf(Protocol):
    """`--shard K/N` (the stream process's `Shard`): accounts with id % count == index."""

    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...


@dataclass(frozen=True)
class _AllAccounts:
    index: int = 0
    count: int = 1


ALL: ShardOf = _AllAccounts()


def accounts_to_stream(shard: ShardOf = ALL) -> set[int]:
    """Live accounts with credentials, not halted, in this shard."""
    with_credentials = (Q(api_version=ApiVersion.V1) & ~Q(api_key="") & ~Q(api_secret="")) | (
        Q(api_version=ApiVersion.V3) & ~Q(signer_private_key="") & ~Q(signer_address="") & ~Q(wallet_address="")
    )
    accounts = (
        Account.objects.filter(with_credentials, is_paper_trading=False)
        .exclude(trading_state=TradingState.HALTED)
        .annotate(shard=Mod("id", shard.count))
        .filter(shard=shard.index)
    )
    return set(accounts.values_list("pk", flat=True))


def _lease_end(seconds: float) -> ExpressionWrapper[CombinedExpression]:
    return ExpressionWrapper(Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField())


def acquire_leases(account_ids: Iterable[int], *, holder: str, seconds: float | None = None) -> set[int]:
    """Take or renew the leases of `account_ids` for `holder`; returns the ones it holds now."""
    ids = set(account_ids)
    if not ids:
        return set()
    seconds = settings.STREAM_LEASE_SECONDS if seconds is None else seconds
    missing = ids - set(StreamLease.objects.filter(account_id__in=ids).values_list("account_id", flat=True))
    if missing:
        # INSERT ... ON CONFLICT DO NOTHING: of two processes inserting one account, one row wins.
        # The times are the renewal's below (the database's clock); accounts deleted meanwhile are left out.
        now = timezone.now()
        StreamLease.objects.bulk_create(
            [
                StreamLease(account_id=pk, holder=holder, acquired_at=now, expires_at=now + timedelta(seconds=seconds))
                for pk in Account.objects.filter(pk__in=missing).values_list("pk", flat=True)
            ],
            ignore_conflicts=True,
        )
    with transaction.atomic():  # short: two conditional UPDATEs
        StreamLease.objects.filter(account_id__in=ids, holder=holder).update(expires_at=_lease_end(seconds))
        StreamLease.objects.filter(account_id__in=ids, expires_at__lt=Now()).exclude(holder=holder).update(
            holder=holder, acquired_at=Now(), expires_at=_lease_end(seconds)
        )
    return held_by(holder, ids)


def held_by(holder: str, account_ids: Iterable[int] | None = None) -> set[int]:
    """The unexpired leases `holder` holds (of `account_ids`, if given)."""
    leases = StreamLease.objects.filter(holder=holder, expires_at__gt=Now())
    if account_ids is not None:
        leases = leases.filter(account_id__in=set(account_ids))
    return set(leases.values_list("account_id", flat=True))


def release_leases(account_ids: Iterable[int] | None = None, *, holder: str) -> int:
    """Give up `holder`'s leases (all of them when `account_ids` is None); never another's."""
    leases = StreamLease.objects.filter(holder=holder)
    if account_ids is not None:
        leases = leases.filter(account_id__in=set(account_ids))
    deleted, _ = leases.delete()
    return deleted


@dataclass
class LeaseChanges:
    """`gained`: start streaming; `dropped`: released here (the account is no longer to be
    streamed: its listenKey may be deleted); `lost`: taken over by another process (keep the
    key: the exchange has one key per account, and the other process uses it now)."""

    held: set[int]
    gained: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)


class LeaseKeeper:
    """One process's side of the leases: call `refresh()` every `renew_seconds`; start streams
    for `gained`, stop those in `lost`; `release()` on shutdown."""

    def __init__(self, *, holder: str, shard: ShardOf = ALL, seconds: float | None = None) -> None:
        """`holder`: host:pid of the process (the stream status board's `holder`)."""
        self.shard = shard
        self.holder = holder
        self.seconds = settings.STREAM_LEASE_SECONDS if seconds is None else seconds
        self.held: set[int] = set()

    @property
    def renew_seconds(self) -> float:
        return self.seconds / 3

    def refresh(self) -> LeaseChanges:
        wanted = accounts_to_stream(self.shard)
        dropped = self.held - wanted  # halted, no longer live, deleted, or moved to another shard
        if dropped:
            release_leases(dropped, holder=self.holder)
        held = acquire_leases(wanted, holder=self.holder, seconds=self.seconds)
        changes = LeaseChanges(held=held, gained=held - self.held, dropped=dropped, lost=(self.held - dropped) - held)
        self.held = held
        return changes

    def release(self) -> None:
        release_leases(holder=self.holder)
        self.held = set()
