"""User-data streams of live accounts in the stream process (issue 12).

`run_user_streams` is the manager task `aster_stream` starts: every lease period it refreshes
the process's leases (`stream_leases.LeaseKeeper`: this shard's live accounts, not halted, not
streamed by another process) and starts one `AccountStream` task per account gained, stops
the tasks of accounts dropped or lost. At shutdown the leases are released.

One `AccountStream` per account, one WebSocket each (`<ASTER_WS_URL>/ws/<listenKey>`):

- every (re)connect first POSTs for the account's listenKey (a new one if the last lapsed;
  the exchange returns the live one, extended, otherwise), then, once the socket is open and
  before any of its events is applied, reconciles the account over REST (`resync_account`),
  so nothing that happened while it was down is lost;
- the key is kept alive every `LISTEN_KEY_KEEPALIVE_SECONDS`; `listenKeyExpired`, a failed
  keepalive (`-1125` or any other), or a closed socket lead to a new key and a new socket
  (`StreamConnection.reconnect`, or its own reconnect);
- frames are queued on the loop and applied in a worker thread in batches (each ordered by
  event time, one event at a time: `AccountEventApplier`); a slow database never blocks the
  socket, and a batch never runs twice at once;
- on stop the key is DELETEd (not when the lease was lost: the exchange has one key per
  account, and the process that took it over uses it).

A user-data socket is quiet when nothing happens, so it is never reconnected for being idle;
its health is "connected" (what reconciliation's schedule reads, with the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from django.conf import settings

from accounts.models import Account
from execution.aster.client import AsterClient
from execution.aster.errors import AsterError
from execution.aster.streams.connection import StreamConnection
from execution.models import StreamKind
from execution.services.exchange import client_for_account
from execution.services.stream_leases import LeaseKeeper, ShardOf
from execution.services.user_stream import AccountEventApplier, resync_account
from execution.streams.process import StreamSupervisor
from execution.streams.status import StatusBoard

logger = logging.getLogger(__name__)

EVENT_TIME_RE = re.compile(r'"E"\s*:\s*(\d{1,16})')
APPLY_TICK_SECONDS = 1.0  # how often the grace of a position difference and the status are looked at


def stream_name(account_id: int, holder: str) -> str:
    return f"user:{account_id}@{holder}"


def account_client(account_id: int) -> AsterClient:
    return client_for_account(Account.objects.get(pk=account_id))


class AccountStream:
    """One live account's user-data stream (see the module docstring)."""

    def __init__(
        self,
        *,
        account_id: int,
        supervisor: StreamSupervisor,
        board: StatusBoard,
        ws_url: str | None = None,
        keepalive_seconds: float | None = None,
        client_factory: Callable[[int], AsterClient] = account_client,
        applier: AccountEventApplier | None = None,
    ) -> None:
        self.account_id = account_id
        self.supervisor = supervisor
        self.name = stream_name(account_id, board.holder)
        self.board = board
        self.health = board.stream(self.name, kind=StreamKind.USER, account_id=account_id)
        self.ws_url = (ws_url or settings.ASTER_WS_URL).rstrip("/")
        self.keepalive_seconds = keepalive_seconds or settings.LISTEN_KEY_KEEPALIVE_SECONDS
        self._client_factory = client_factory
        self.applier = applier or AccountEventApplier(account_id)
        self.client: AsterClient | None = None
        self.connection: StreamConnection | None = None
        self.listen_key: str | None = None
        self.keep_key_on_exit = False
        self.resyncs = 0
        self.new_keys = 0
        self.keepalives = 0
        self.expired_keys = 0
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # --- the task -----------------------------------------------------------------------------

    async def run(self) -> None:
        # Again on a restart (the supervisor restarts a task that raised): `finally` forgot it.
        self.health = self.board.stream(self.name, kind=StreamKind.USER, account_id=self.account_id)
        applying = asyncio.create_task(self._apply_loop(), name=f"{self.name}-apply")
        keepalive: asyncio.Task[None] | None = None
        try:
            self.client = await self.supervisor.run_blocking(self._client_factory, self.account_id)
            self.connection = StreamConnection(
                name=self.name,
                url=self._url,  # a listenKey asked for before every socket
                on_frame=self._on_frame,
                on_connect=self._on_connect,
                idle_seconds=None,  # a quiet account sends nothing: silence is not a failure
                rollover_seconds=settings.STREAM_ROLLOVER_SECONDS,
                backoff_max=settings.STREAM_BACKOFF_MAX_SECONDS,
            )
            keepalive = asyncio.create_task(self._keepalive_loop(), name=f"{self.name}-keepalive")
            await self.connection.run()
        finally:
            for task in (applying, keepalive):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self.connection is not None:
                await self.connection.close()
            await self._close_key()
            self.board.forget(self.name)

    async def _renew(self, reason: str) -> None:
        """A new key and a new socket (reconciled on connect): the current key is gone or suspect."""
        logger.warning("user stream %s: %s; a new key and socket", self.name, reason)
        self.listen_key = None
        if self.connection is not None:
            await self.connection.reconnect(reason)

    async def _url(self) -> str:
        """Called by the connection before every socket it opens: the account's listenKey."""
        assert self.client is not None
        key = await self.supervisor.run_blocking(self.client.create_listen_key)
        if key != self.listen_key:
            self.new_keys += 1
        self.listen_key = key
        return self.client.user_stream_url(self.ws_url, key)

    async def _on_connect(self) -> None:
        """Before any event of the new socket is applied: reconcile over REST (what happened
        while no socket was open). A failure fails the connect, which is retried."""
        await self.supervisor.run_blocking(resync_account, self.account_id)
        self.resyncs += 1

    def _on_frame(self, text: str, received_at: datetime) -> None:
        match = EVENT_TIME_RE.search(text[:200])
        self.health.frame(received_at=received_at, event_time_ms=int(match.group(1)) if match else 0)
        if '"listenKeyExpired"' in text:
            # Nothing more comes on this socket: a new key, a new socket (reconciled on connect).
            self.expired_keys += 1
            self._spawn(self._renew("listenKeyExpired"))
            return
        self._queue.append(text)
        self._wake.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._background.discard)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_seconds)
            if self.listen_key is None or self.client is None:
                continue
            try:
                await self.supervisor.run_blocking(self.client.keepalive_listen_key)
                self.keepalives += 1
            except AsterError as exc:  # -1125 (the key is gone) or any other: a new key, a new socket
                self.health.dropped(0, reason=f"keepalive failed: {exc}")
                await self._renew(f"keepalive failed ({exc})")

    async def _apply_loop(self) -> None:
        """Apply what arrived, one batch at a time, in a worker thread; tick for the grace of a
        position difference and for the status row."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=APPLY_TICK_SECONDS)
            self._wake.clear()
            if self.connection is not None:
                self.health.follow(self.connection.stats)
            try:
                if self._queue:
                    batch = list(self._queue)
                    self._queue.clear()
                    await self._apply(batch)
                elif self.applier.mismatch_pending:
                    await self.supervisor.run_blocking(self.applier.check_positions)
            except Exception as exc:
                # The database or the exchange failed mid-batch: what was committed stands, the
                # rest is found by the reconciliation of the next connect, forced now.
                logger.exception("user stream %s: applying events failed; reconnecting to resync", self.name)
                self.health.dropped(0, reason=f"apply failed: {exc}")
                if self.connection is not None:
                    await self.connection.reconnect("applying events failed")

    async def _apply(self, batch: list[str]) -> None:
        counters = self.applier.counters
        bad_before = counters.malformed + counters.rejected
        await self.supervisor.run_blocking(self.applier.apply_frames, batch)
        bad = counters.malformed + counters.rejected - bad_before
        if bad:
            self.health.dropped(bad, reason="malformed or rejected user-data event")

    async def _close_key(self) -> None:
        if self.listen_key is None or self.client is None or self.keep_key_on_exit:
            return
        try:
            await self.supervisor.run_blocking(self.client.close_listen_key)
        except Exception as exc:  # best effort: it lapses on its own within 60 minutes
            logger.warning("user stream %s: could not delete the listenKey: %s", self.name, exc)
        self.listen_key = None


async def run_user_streams(
    *,
    supervisor: StreamSupervisor,
    board: StatusBoard,
    shard: ShardOf,
    ws_url: str | None = None,
    lease_seconds: float | None = None,
    stream_options: dict[str, object] | None = None,
    registry: dict[int, AccountStream] | None = None,
) -> None:
    """The manager task: leases in, per-account tasks started and stopped (module docstring).
    `registry`, when given, is kept equal to the running streams (for tests and benchmarks)."""
    keeper = LeaseKeeper(holder=board.holder, shard=shard, seconds=lease_seconds)
    streams: dict[int, AccountStream] = registry if registry is not None else {}

    async def release() -> None:
        await supervisor.run_blocking(keeper.release)

    supervisor.add_shutdown_hook("user streams: release leases", release)
    try:
        while True:
            try:
                changes = await supervisor.run_blocking(keeper.refresh)
            except Exception:
                logger.exception("user streams: lease refresh failed (retried)")
                await asyncio.sleep(keeper.renew_seconds)
                continue
            for account_id in changes.dropped | changes.lost:
                stream = streams.pop(account_id, None)
                if stream is not None:
                    stream.keep_key_on_exit = account_id in changes.lost
                    await supervisor.remove(stream_name(account_id, board.holder))
            for account_id in sorted(changes.gained):
                name = stream_name(account_id, board.holder)
                if name in supervisor:
                    continue  # this manager was restarted: the stream runs on
                stream = AccountStream(
                    account_id=account_id,
                    supervisor=supervisor,
                    board=board,
                    ws_url=ws_url,
                    **(stream_options or {}),  # type: ignore[arg-type]
                )
                streams[account_id] = stream
                supervisor.add(name, stream.run)
            await asyncio.sleep(keeper.renew_seconds)
    finally:
        for account_id in list(streams):
            await supervisor.remove(stream_name(account_id, board.holder))
