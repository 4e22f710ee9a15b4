"""The stream process's skeleton: one asyncio event loop, one task per connection, clean shutdown.

`StreamSupervisor` owns the named tasks. The market-data stream is one; each live account's
user-data stream is another, added and removed while the process runs:

    supervisor.add("user:42", lambda: run_user_stream(account_id=42, supervisor=supervisor))
    await supervisor.remove("user:42")   # cancels it; its `finally` closes the socket, DELETEs the key

A task that raises is logged and restarted after a growing delay (a bug must not spin, nor
silently end a stream); a task that returns is finished and forgotten. On SIGTERM/SIGINT every
task is cancelled (their `finally` blocks run: sockets close, listenKeys are deleted), then the
shutdown hooks run (e.g. releasing leases), newest first.

Blocking Django work (the ORM, Redis, REST calls) never runs on the loop: `run_blocking` runs it
in the process's worker threads, with Django's connection housekeeping around each call as a
request would have it (`close_old_connections` before and after), and every thread's database
connection is closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
TaskFactory = Callable[[], Coroutine[Any, Any, None]]
ShutdownHook = Callable[[], Awaitable[None]]


class StreamSupervisor:
    def __init__(
        self,
        *,
        threads: int = 8,
        restart_delay: float = 1.0,
        restart_delay_max: float = 60.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.threads = threads
        self.restart_delay = restart_delay
        self.restart_delay_max = restart_delay_max
        self.shutdown_timeout = shutdown_timeout
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stream-worker")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._hooks: list[tuple[str, ShutdownHook]] = []
        self._stop = asyncio.Event()
        self._stopped = False
        self.restarts: dict[str, int] = {}

    # --- tasks ---------------------------------------------------------------------------

    def add(self, name: str, factory: TaskFactory) -> None:
        """Start the task `name` now, running `factory()`; restarted if it raises.
        Call on the loop. ValueError if a task of that name runs already."""
        if self._stopped:
            raise RuntimeError("the stream process is shutting down")
        if name in self._tasks:
            raise ValueError(f"stream task {name!r} is already running")
        task = asyncio.create_task(self._keep(name, factory), name=f"stream:{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))

    async def remove(self, name: str) -> bool:
        """Cancel the task `name` and wait for its clean-up (up to `shutdown_timeout`).
        False when no such task runs."""
        task = self._tasks.pop(name, None)
        if task is None:
            return False
        await self._cancel([task])
        return True

    def names(self) -> set[str]:
        return set(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def add_shutdown_hook(self, name: str, hook: ShutdownHook) -> None:
        """Run `hook()` at shutdown, after every task has stopped (newest hook first)."""
        self._hooks.append((name, hook))

    # --- blocking work -------------------------------------------------------------------

    async def run_blocking(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` in a worker thread; the loop keeps serving sockets meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: _with_db_housekeeping(function, args, kwargs))

    # --- running and stopping ------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to shut down (what SIGTERM/SIGINT do)."""
        self._stop.set()

    async def run(self, *, install_signals: bool = True) -> None:
        """Wait for a stop (signal or `stop()`), then shut down cleanly."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._stop.wait()
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self.shutdown()

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await self._cancel(tasks)
        for name, hook in reversed(self._hooks):
            try:
                await asyncio.wait_for(hook(), timeout=self.shutdown_timeout)
            except Exception:
                logger.exception("stream process: shutdown hook %s failed", name)
        await asyncio.get_running_loop().run_in_executor(None, self._close_worker_connections)
        self._executor.shutdown(wait=True)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("stream process: %s received, shutting down", sig.name)
        self.stop()

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        delay = self.restart_delay
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except Exception:
                logger.exception("stream task %s failed; restarting in %.1f s", name, delay)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if time.monotonic() - started > self.restart_delay_max:
                delay = self.restart_delay  # it had been running well: start the backoff afresh
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.restart_delay_max)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
        for task in pending:
            logger.error("stream task %s did not stop within %.0f s", task.get_name(), self.shutdown_timeout)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error("stream task %s failed while stopping: %r", task.get_name(), task.exception())

    def _close_worker_connections(self) -> None:
        """Close the database connection of every worker thread (each thread has its own).

        One job per thread, all held at a barrier so that each runs on a different thread."""
        barrier = threading.Barrier(self.threads)

        def close_here() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        futures = [self._executor.submit(close_here) for _ in range(self.threads)]
        for future in futures:
            future.result()


def _with_db_housekeeping(function: Callable[..., T], args: Any, kwargs: Any) -> T:
    # Like a request: drop connections past CONN_MAX_AGE or broken ones before, and after (with
    # the default CONN_MAX_AGE=0 this closes the connection, so idle threads hold none).
    close_old_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


@dataclass(frozen=True)
class Shard:
    """`--shard K/N`: this process takes the accounts whose id is K modulo N."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index_text, count_text = text.split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ValueError(f"a shard is K/N (e.g. 0/2), got {text!r}") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"a shard K/N needs 0 <= K < N, got {text!r}")
        return cls(index=index, count=count)

    def owns(self, account_id: int) -> bool:
        return account_id % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
