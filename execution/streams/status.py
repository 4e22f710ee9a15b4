"""What each stream reports, where operators and health checks see it: the `StreamStatus` table.

The process keeps one `StreamHealth` per stream in memory (updated on every frame, cheaply) and
a `StatusBoard` writes the changed ones at most every `interval` seconds, all in one statement,
from a worker thread. Rows are named `market@host:pid` / by the user-data engineer's choice, so
two processes never overwrite each other's row; rows not updated for a day are pruned at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from execution.aster.streams.connection import ConnectionStats
from execution.metrics import STREAM_FRAMES_DROPPED, STREAM_LAG_SECONDS, STREAM_RECONNECTS
from execution.models import StreamStatus
from execution.streams.process import StreamSupervisor

logger = logging.getLogger(__name__)

PRUNE_AFTER = timedelta(days=1)


def holder_name() -> str:
    """host:pid of this process (what `StreamStatus.holder` and the leases record)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


@dataclass
class StreamHealth:
    """One stream's live figures (the future `StreamStatus` row)."""

    name: str
    kind: str
    holder: str
    account_id: int | None = None
    connected: bool = False
    connected_at: datetime | None = None
    last_frame_at: datetime | None = None
    last_event_time_ms: int = 0
    lag_ms: int | None = None
    reconnects: int = 0
    dropped_frames: int = 0
    last_error: str = ""
    version: int = 0  # bumped on every change; the board writes rows whose version moved

    def frame(self, *, received_at: datetime, event_time_ms: int = 0) -> None:
        """A data frame arrived; `event_time_ms` is the exchange's time of its newest event."""
        self.last_frame_at = received_at
        if event_time_ms > self.last_event_time_ms:
            self.last_event_time_ms = event_time_ms
            self.lag_ms = int(received_at.timestamp() * 1000) - event_time_ms
            STREAM_LAG_SECONDS.labels(kind=self.kind).set(self.lag_ms / 1000)
        self.version += 1

    def dropped(self, count: int = 1, *, reason: str = "") -> None:
        self.dropped_frames += count
        STREAM_FRAMES_DROPPED.labels(kind=self.kind).inc(count)
        if reason:
            self.last_error = reason[:500]
        self.version += 1

    def follow(self, stats: ConnectionStats) -> None:
        """Copy the connection's own counters (connected, reconnects, its last error)."""
        changed = (
            self.connected != stats.connected
            or self.reconnects != stats.reconnects
            or self.connected_at != stats.connected_at
            or (stats.last_error and self.last_error != stats.last_error)
        )
        if changed:
            if stats.reconnects > self.reconnects:
                STREAM_RECONNECTS.labels(kind=self.kind).inc(stats.reconnects - self.reconnects)
            self.connected, self.reconnects, self.connected_at = stats.connected, stats.reconnects, stats.connected_at
            if stats.last_error:
                self.last_error = stats.last_error[:500]
            self.version += 1


class StatusBoard:
    """The process's streams' health, flushed to `StreamStatus` at most every `interval` seconds."""

    def __init__(self, *, holder: str | None = None, interval: float = 2.0) -> None:
        self.holder = holder or holder_name()
        self.interval = interval
        self._streams: dict[str, StreamHealth] = {}
        self._written: dict[str, int] = {}
        self._forgotten: list[StreamHealth] = []  # removed streams, written once more as disconnected
        self.writes = 0

    def stream(self, name: str, *, kind: str, account_id: int | None = None) -> StreamHealth:
        """The health record of `name` (created on first use)."""
        health = self._streams.get(name)
        if health is None:
            health = StreamHealth(name=name, kind=kind, holder=self.holder, account_id=account_id)
            self._streams[name] = health
        return health

    def forget(self, name: str) -> StreamHealth | None:
        """Stop tracking `name`; its row is written once more as disconnected at the next flush."""
        health = self._streams.get(name)
        if health is not None:
            health.connected = False
            health.version += 1
            self._forgotten.append(health)
            del self._streams[name]
        return health

    def changed(self) -> list[StreamHealth]:
        rows = [replace(h) for h in self._streams.values() if self._written.get(h.name) != h.version]
        rows.extend(self._forgotten)
        return rows

    def mark_written(self, rows: Sequence[StreamHealth]) -> None:
        for row in rows:
            self._written[row.name] = row.version
        forgotten = {row.name for row in rows}
        self._forgotten = [h for h in self._forgotten if h.name not in forgotten]
        self.writes += 1

    def attach(self, supervisor: StreamSupervisor) -> None:
        """Run the writer as the supervisor's task `status`; at shutdown, write every stream
        once more as disconnected."""
        supervisor.add("status", lambda: self.run(supervisor))

        async def final_write() -> None:
            self.disconnect_all()
            await self.flush(supervisor)

        supervisor.add_shutdown_hook("status: final write", final_write)

    async def run(self, supervisor: StreamSupervisor) -> None:
        """The writer task: prune old rows once, then flush every `interval` seconds."""
        await supervisor.run_blocking(prune_statuses)
        while True:
            await asyncio.sleep(self.interval)
            await self.flush(supervisor)

    async def flush(self, supervisor: StreamSupervisor) -> None:
        rows = self.changed()
        if not rows:
            return
        try:
            await supervisor.run_blocking(write_statuses, rows)
        except Exception:
            logger.exception("stream status: write failed (retried at the next flush)")
            return
        self.mark_written(rows)

    def disconnect_all(self) -> None:
        for health in self._streams.values():
            if health.connected:
                health.connected = False
                health.version += 1


def write_statuses(rows: Sequence[StreamHealth]) -> None:
    """Upsert the rows in one statement."""
    now = timezone.now()
    objects = [
        StreamStatus(
            name=row.name,
            kind=row.kind,
            account_id=row.account_id,
            holder=row.holder,
            connected=row.connected,
            connected_at=row.connected_at,
            last_frame_at=row.last_frame_at,
            last_event_time_ms=row.last_event_time_ms,
            lag_ms=_clamped(row.lag_ms),
            reconnects=row.reconnects,
            dropped_frames=row.dropped_frames,
            last_error=row.last_error,
            updated_at=now,
        )
        for row in rows
    ]
    StreamStatus.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=[
            "kind",
            "account",
            "holder",
            "connected",
            "connected_at",
            "last_frame_at",
            "last_event_time_ms",
            "lag_ms",
            "reconnects",
            "dropped_frames",
            "last_error",
            "updated_at",
        ],
    )


def _clamped(lag_ms: int | None) -> int | None:
    if lag_ms is None:
        return None
    return max(-(2**31), min(2**31 - 1, lag_ms))  # a wild exchange clock must not break the write


def prune_statuses(*, now: datetime | None = None) -> int:
    """Delete rows of processes gone for a day (names carry host:pid, so rows accumulate)."""
    cutoff = (now or timezone.now()) - PRUNE_AFTER
    deleted, _ = StreamStatus.objects.filter(updated_at__lt=cutoff).delete()
    return deleted


# --- selectors ------------------------------------------------------------------------------


def stream_statuses(*, kind: str | None = None) -> QuerySet[StreamStatus]:
    """Every recorded stream (for operators and the admin), optionally of one kind."""
    rows = StreamStatus.objects.all()
    return rows.filter(kind=kind) if kind else rows
