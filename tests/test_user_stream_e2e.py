"""User-data streams over real sockets against the simulator, V1 and V3 (issue 12 acceptance):
the stream process books what the exchange does, with reconciliation only on connect."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from execution.models import PendingOrder, Position, ReconciliationRun, StreamLease, StreamStatus, Trade
from execution.services import ExecutionService
from execution.streams.process import Shard, StreamSupervisor
from execution.streams.status import StatusBoard
from execution.streams.user_data import AccountStream, run_user_streams
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory

# Two threads write at once (the test drives the exchange and the order path, the stream books):
# SQLite's shared in-memory test database refuses that ("table is locked"), so PostgreSQL only.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FACTORIES = {"v1": (LiveV1AccountFactory, "demo-v1"), "v3": (LiveV3AccountFactory, "demo-v3")}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class UserStreamThread:
    """The stream process's user-data side on its own event loop in a thread, as `aster_stream` runs it."""

    def __init__(
        self, ws_url: str, *, holder: str = "test:1", lease_seconds: float = 3.0, **stream_options: Any
    ) -> None:
        self.ws_url = ws_url
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.stream_options = stream_options
        self.streams: dict[int, AccountStream] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"user-stream-{holder}")
        self.error: BaseException | None = None

    async def _main(self) -> None:
        try:
            self.supervisor = StreamSupervisor(threads=4)
            self.board = StatusBoard(holder=self.holder, interval=0.2)
            self.board.attach(self.supervisor)
            self.supervisor.add(
                "user-streams",
                lambda: run_user_streams(
                    supervisor=self.supervisor,
                    board=self.board,
                    shard=Shard(0, 1),
                    ws_url=self.ws_url,
                    lease_seconds=self.lease_seconds,
                    stream_options=self.stream_options,
                    registry=self.streams,
                ),
            )
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            await self.supervisor.run(install_signals=False)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise

    def stream(self, account_id: int) -> AccountStream:
        return wait_for(lambda: self.streams.get(account_id), f"the stream of account {account_id}")

    def __enter__(self) -> UserStreamThread:
        self.thread.start()
        assert self.ready.wait(10) and self.error is None
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.supervisor.stop)
        self.thread.join(15)
        assert not self.thread.is_alive()
        connection.close()


@pytest.fixture(params=["v1", "v3"])
def live(request, sim, settings):
    settings.ASTER_WS_URL = sim.ws_url
    settings.USER_STREAM_MISMATCH_GRACE_SECONDS = 0.5
    factory, sim_name = FACTORIES[request.param]
    return factory(), sim_name, sim.exchange.accounts[sim_name]


def no_sleep(seconds: float) -> None:
    return None


def connected(streams: UserStreamThread, account_id: int, resyncs: int = 1) -> AccountStream:
    stream = streams.stream(account_id)
    wait_for(lambda: stream.connection is not None and stream.connection.connected, "the user stream to connect")
    wait_for(lambda: stream.resyncs >= resyncs, "the reconciliation on connect")
    return stream


def open_protected(account: Any, *, stop_loss: str = "60000") -> tuple[PendingOrder, PendingOrder]:
    result = ExecutionService(account, sleep=no_sleep).execute_market_order(
        symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000", stop_loss=stop_loss
    )
    legs = {leg.kind: leg for leg in result.pending_orders}
    return legs["take_profit"], legs["stop_loss"]


def sim_status(remote: Any, client_order_id: str) -> str:
    return next(o.status for o in reversed(list(remote.orders.values())) if o.client_order_id == client_order_id)


def closed_by(reason: str) -> Callable[[], bool]:
    return lambda: Position.objects.filter(status="closed").exists() and Trade.objects.filter(reason=reason).exists()


def test_a_take_profit_fired_by_price_is_booked_with_no_reconciliation_run(sim, live):
    account, _name, remote = live
    with UserStreamThread(sim.ws_url) as streams:
        stream = connected(streams, account.pk)
        tp, sl = open_protected(account)
        runs = ReconciliationRun.objects.count()
        fired = time.monotonic()
        sim.exchange.set_price("BTCUSDT", Decimal("70500"))
        wait_for(closed_by("take_profit"), "the take-profit to be booked")
        took = time.monotonic() - fired
        wait_for(lambda: sim_status(remote, sl.client_order_id) == "CANCELED", "the stop cancelled on the exchange")
        time.sleep(1.0)  # past the grace of a position difference: nothing left to reconcile
        assert ReconciliationRun.objects.count() == runs and stream.applier.counters.reconciles == 0
        tp.refresh_from_db()
        sl.refresh_from_db()
        assert (tp.status, sl.status) == ("filled", "cancelled") and not sl.venue_cancel_pending
        status = StreamStatus.objects.get(account=account)
        assert status.kind == "user" and status.connected and status.holder == "test:1"
        assert StreamLease.objects.get(account=account).holder == "test:1"
    assert took < 2.0
    assert not StreamLease.objects.exists()  # released on shutdown
    assert sim.listen_keys.key_of(_name) is None  # DELETEd on shutdown


def test_partial_fills_over_the_socket(sim, live):
    account, name, _remote = live
    with UserStreamThread(sim.ws_url) as streams:
        connected(streams, account.pk)
        tp, _sl = open_protected(account)
        sim.split_next_fills(name, parts=3)
        sim.exchange.set_price("BTCUSDT", Decimal("70500"))
        wait_for(closed_by("take_profit"), "the take-profit to be booked")
        closes = Trade.objects.filter(reason="take_profit")
        assert closes.count() == 3 and sum(t.quantity for t in closes) == Decimal("0.02")
        tp.refresh_from_db()
        assert tp.status == "filled"


def test_an_external_cancel_of_a_leg_is_repaired(sim, live):
    account, _name, remote = live
    with UserStreamThread(sim.ws_url) as streams:
        connected(streams, account.pk)
        _tp, sl = open_protected(account)
        sim.exchange.cancel_order(remote, order_id=None, client_order_id=sl.client_order_id)
        new = wait_for(
            lambda: PendingOrder.objects.filter(kind="stop_loss", status="pending")
            .exclude(pk=sl.pk)
            .exclude(exchange_order_id="")
            .first(),
            "a new stop",
        )
        assert new.pk != sl.pk and sim_status(remote, new.client_order_id) == "NEW"


def test_a_liquidation(sim, live):
    account, _name, remote = live
    with UserStreamThread(sim.ws_url) as streams:
        connected(streams, account.pk)
        # A take-profit only: a stop would fire before liquidation (and one past the liquidation
        # price is refused with INVALID_PROTECTION).
        ExecutionService(account, sleep=no_sleep).execute_market_order(
            symbol="BTCUSDT", side="BUY", quantity="0.02", leverage=5, take_profit="70000"
        )
        sim.exchange.set_price("BTCUSDT", Decimal("50000"))
        wait_for(closed_by("liquidation"), "the liquidation to be booked")
        wait_for(lambda: not PendingOrder.objects.filter(status="pending").exists(), "the legs settled")
        assert remote.positions["BTCUSDT"].amount == 0


def test_the_same_event_delivered_twice_is_booked_once(sim, live):
    account, _name, _remote = live
    sim.exchange.event_listeners.append(sim.exchange.event_listeners[0])  # every event goes out twice
    with UserStreamThread(sim.ws_url) as streams:
        stream = connected(streams, account.pk)
        open_protected(account)
        sim.exchange.set_price("BTCUSDT", Decimal("70500"))
        wait_for(closed_by("take_profit"), "the take-profit to be booked")
        wait_for(lambda: stream.applier.counters.actions.get("duplicate", 0) >= 2, "the duplicates to arrive")
        assert Trade.objects.filter(reason="take_profit").count() == 1


def test_a_stop_fired_while_the_socket_is_down_is_booked_once_after_the_reconnect(sim, live):
    account, name, _remote = live
    with UserStreamThread(sim.ws_url) as streams:
        stream = connected(streams, account.pk)
        open_protected(account)
        sim.hold_events(name)  # what the exchange sends from here on never reaches the old socket
        sim.drop_user_sockets(name)
        sim.exchange.set_price("BTCUSDT", Decimal("59000"))  # the stop fires while the socket is down
        wait_for(lambda: stream.resyncs >= 2, "the reconnect's reconciliation")
        wait_for(closed_by("stop_loss"), "the stop to be booked")
        assert sim.release_events(name) > 0  # and the events arrive late, after the reconnect
        wait_for(lambda: stream.applier.counters.actions.get("already_booked", 0) >= 1, "the late events")
        assert Trade.objects.filter(reason="stop_loss").count() == 1
        assert Position.objects.get().status == "closed"


def test_an_expired_key_is_replaced_and_the_stream_goes_on(sim, live):
    account, name, _remote = live
    with UserStreamThread(sim.ws_url) as streams:
        stream = connected(streams, account.pk)
        first_key = stream.listen_key
        sim.expire_listen_key(name)
        wait_for(lambda: stream.expired_keys == 1 and stream.resyncs >= 2, "a new key and socket")
        wait_for(lambda: stream.listen_key not in (None, first_key), "the new key")
        open_protected(account)
        sim.exchange.set_price("BTCUSDT", Decimal("70500"))
        wait_for(closed_by("take_profit"), "the take-profit booked on the new socket")


def test_a_failed_keepalive_renews_the_key(sim, live):
    account, name, _remote = live
    with UserStreamThread(sim.ws_url, keepalive_seconds=0.2) as streams:
        stream = connected(streams, account.pk)
        wait_for(lambda: stream.keepalives >= 1, "a keepalive")
        first_key = stream.listen_key
        sim.listen_keys.expire_now(name)  # silently: the next keepalive gets -1125
        wait_for(lambda: stream.listen_key not in (None, first_key) and stream.resyncs >= 2, "a new key")


def test_two_stream_processes_never_both_stream_an_account_and_a_stopped_ones_are_taken_over(sim, live):
    account, name, _remote = live
    first = UserStreamThread(sim.ws_url, holder="first:1", lease_seconds=1.5).__enter__()
    stream = connected(first, account.pk)
    with UserStreamThread(sim.ws_url, holder="second:2", lease_seconds=1.5) as second:
        time.sleep(1.2)  # more than one renewal of both
        assert account.pk not in second.streams and sim.streams.state()["user_sockets"] == 1
        first.__exit__()  # a clean stop releases the lease and deletes the key...
        assert sim.listen_keys.key_of(name) is None and not StreamLease.objects.filter(holder="first:1").exists()
        taken = connected(second, account.pk)  # ...and the other process takes the account over
        assert taken is not stream and StreamLease.objects.get(account=account).holder == "second:2"
        wait_for(lambda: sim.streams.state()["user_sockets"] == 1, "one socket for the account")
