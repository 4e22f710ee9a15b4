"""Stream leases: shards, take/renew/release, takeover after expiry; two holders never both
hold an account (PostgreSQL, threads racing)."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now

from accounts.models import TradingState
from execution.models import StreamLease
from execution.services.stream_leases import (
    LeaseKeeper,
    accounts_to_stream,
    acquire_leases,
    held_by,
    release_leases,
)
from execution.streams.process import Shard
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory, UserFactory


@pytest.mark.django_db
def test_accounts_to_stream_are_live_with_credentials_not_halted_in_the_shard():
    live = [LiveV1AccountFactory(), LiveV3AccountFactory(), LiveV1AccountFactory()]
    PaperAccountFactory()
    halted = LiveV1AccountFactory(trading_state=TradingState.HALTED)
    no_key = LiveV1AccountFactory()
    no_key.api_secret = ""
    no_key.save()
    assert accounts_to_stream() == {a.pk for a in live}
    shards = [accounts_to_stream(Shard(k, 2)) for k in (0, 1)]
    assert shards[0] | shards[1] == {a.pk for a in live} and not shards[0] & shards[1]
    assert all(pk % 2 == k for k, ids in enumerate(shards) for pk in ids)
    assert halted.pk not in accounts_to_stream()


@pytest.mark.django_db
def test_take_renew_and_release():
    a, b = LiveV1AccountFactory(), LiveV3AccountFactory()
    assert acquire_leases([a.pk, b.pk], holder="p1") == {a.pk, b.pk}
    assert acquire_leases([a.pk, b.pk], holder="p2") == set()  # held by p1, not lapsed
    first = StreamLease.objects.get(account=a).expires_at
    time.sleep(0.01)
    assert acquire_leases([a.pk], holder="p1") == {a.pk}
    assert StreamLease.objects.get(account=a).expires_at > first  # renewed
    assert release_leases([a.pk], holder="p2") == 0  # never another's
    assert release_leases(holder="p1") == 2
    assert acquire_leases([a.pk], holder="p2") == {a.pk}


@pytest.mark.django_db
def test_a_dead_holders_lease_is_taken_over_after_it_lapses():
    account = LiveV1AccountFactory()
    assert acquire_leases([account.pk], holder="dead", seconds=0.2) == {account.pk}
    assert acquire_leases([account.pk], holder="alive") == set()
    time.sleep(0.3)
    assert acquire_leases([account.pk], holder="alive") == {account.pk}
    assert held_by("dead") == set() and StreamLease.objects.get().holder == "alive"


@pytest.mark.django_db
def test_the_keeper_picks_up_and_drops_accounts_without_a_restart():
    a = LiveV1AccountFactory()
    keeper = LeaseKeeper(holder="p1", seconds=30)
    assert keeper.refresh().gained == {a.pk}
    b = LiveV3AccountFactory()
    changes = keeper.refresh()
    assert (changes.gained, changes.lost) == ({b.pk}, set())
    a.trading_state = TradingState.HALTED
    a.save()
    changes = keeper.refresh()
    assert (changes.gained, changes.dropped, changes.lost, changes.held) == (set(), {a.pk}, set(), {b.pk})
    assert not StreamLease.objects.filter(account=a).exists()  # released for whoever streams it next
    b.is_paper_trading = True
    b.save()
    assert keeper.refresh().dropped == {b.pk}
    c = LiveV1AccountFactory()
    keeper.refresh()
    StreamLease.objects.filter(account=c).update(holder="thief")  # as if taken over after a lapse
    assert keeper.refresh().lost == {c.pk}
    StreamLease.objects.filter(account=c).update(holder="p1")
    keeper.refresh()
    keeper.release()
    assert not StreamLease.objects.filter(account=c).exists() and keeper.held == set()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_processes_never_both_hold_an_account():
    """Two holders race for the same accounts, one at a time in random orders and all at once;
    every other round every lease lapses first (as if its holder had died). Within a round no
    lease can lapse, so what the two got must never overlap."""
    owner = UserFactory()
    accounts = [LiveV1AccountFactory(owner=owner).pk for _ in range(8)]
    rounds = 10
    barrier = threading.Barrier(2)
    held: dict[str, list[set[int]]] = {"p1": [], "p2": []}
    errors: list[BaseException] = []

    def run(holder: str, seed: int) -> None:
        order = random.Random(seed)
        try:
            for round_ in range(rounds):
                barrier.wait()
                if holder == "p1" and round_ % 2 == 0:
                    StreamLease.objects.update(expires_at=Now() - timedelta(seconds=1))
                barrier.wait()
                got: set[int] = set()
                for pk in order.sample(accounts, len(accounts)):
                    got |= acquire_leases([pk], holder=holder, seconds=30)
                got |= acquire_leases(accounts, holder=holder, seconds=30)
                held[holder].append(got)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(name, seed)) for seed, name in enumerate(held)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for mine, theirs in zip(held["p1"], held["p2"], strict=True):
        assert not mine & theirs
        assert mine | theirs == set(accounts)  # and no account is left without a holder
    assert any(held["p1"]) and any(held["p2"])  # both won some: the race was real
    assert StreamLease.objects.count() == len(accounts)
