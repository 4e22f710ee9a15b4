"""listenKeys of the simulated exchange (ASTER_WS.md §2.1-2.2): one active key per account.

A key is valid `validity_seconds` (60 min, shorter in tests) from its creation or last
keepalive. POST while a key is active returns the same key, extended. An expired key is gone:
keepalive and close answer -1125, and the WebSocket server pushes `listenKeyExpired` on its
sockets (it polls `expire_due`). Thread-safe: the HTTP threads create and extend keys, the
WebSocket loop looks them up; its own small lock, never the exchange's.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from execution.aster.simulator.exchange import SimError

DEFAULT_VALIDITY_SECONDS = 60 * 60.0
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 64


def invalid_listen_key() -> SimError:
    return SimError(-1125, "This listenKey does not exist.")


@dataclass
class ListenKey:
    key: str
    account: str
    expires_at: float


class ListenKeys:
    def __init__(
        self, *, validity_seconds: float = DEFAULT_VALIDITY_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        if validity_seconds <= 0:
            raise ValueError(f"validity_seconds must be > 0, got {validity_seconds}")
        self.validity_seconds = validity_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._by_account: dict[str, ListenKey] = {}
        self._by_key: dict[str, ListenKey] = {}

    def create(self, account: str) -> str:
        """The account's active key, extended; a new one when it has none."""
        with self._lock:
            current = self._live(self._by_account.get(account))
            if current is None:
                current = ListenKey(
                    key="".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH)),
                    account=account,
                    expires_at=0.0,
                )
                self._by_account[account] = current
                self._by_key[current.key] = current
            current.expires_at = self.clock() + self.validity_seconds
            return current.key

    def keepalive(self, account: str, key: str | None = None) -> None:
        """Extend the account's key (`key`, when given, must be it); -1125 when there is none."""
        with self._lock:
            current = self._live(self._by_account.get(account))
            if current is None or (key is not None and key != current.key):
                raise invalid_listen_key()
            current.expires_at = self.clock() + self.validity_seconds

    def close(self, account: str, key: str | None = None) -> str:
        """Delete the account's key; returns it. -1125 when there is none."""
        with self._lock:
            current = self._live(self._by_account.get(account))
            if current is None or (key is not None and key != current.key):
                raise invalid_listen_key()
            self._forget(current)
            return current.key

    def account_of(self, key: str) -> str | None:
        """The account a live key belongs to; None for an unknown or expired key."""
        with self._lock:
            entry = self._live(self._by_key.get(key))
            return entry.account if entry else None

    def key_of(self, account: str) -> str | None:
        with self._lock:
            entry = self._live(self._by_account.get(account))
            return entry.key if entry else None

    def expire_now(self, account: str) -> None:
        """Make the account's key lapse now (the next `expire_due` reports it)."""
        with self._lock:
            entry = self._by_account.get(account)
            if entry is not None:
                entry.expires_at = self.clock() - 1

    def expire_due(self) -> list[ListenKey]:
        """Remove and return the keys whose time has run out."""
        now = self.clock()
        with self._lock:
            due = [entry for entry in self._by_key.values() if entry.expires_at <= now]
            for entry in due:
                self._forget(entry)
            return due

    def _live(self, entry: ListenKey | None) -> ListenKey | None:
        # An expired key is dead for REST at once, even before expire_due has collected it.
        return entry if entry is not None and entry.expires_at > self.clock() else None

    def _forget(self, entry: ListenKey) -> None:
        self._by_key.pop(entry.key, None)
        if self._by_account.get(entry.account) is entry:
            del self._by_account[entry.account]
