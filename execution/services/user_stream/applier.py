"""Applying one account's user-data events, in order, one at a time.

`apply_user_event` applies one parsed event: each write is its own short transaction under
the account lock (the same lock, taken first, as the order path and reconciliation), and any
call to the exchange (cancelling a sibling, placing a leg again) comes after its commit.

`AccountEventApplier` is what a stream connection feeds: it parses frames (a malformed one is
counted, logged and writes nothing), orders a batch by event time (`E`; the exchange does not
guarantee order), applies the events one after the other, and runs the account's
reconciliation when an event asks for it. A position that differs in an ACCOUNT_UPDATE is
held for `grace_seconds` first: the exchange may push the balance change just before the
ORDER_TRADE_UPDATE that explains it, and that event books it without a reconciliation.

`resync_account` reconciles the account over REST; the stream calls it on every connect,
before that connection's events are applied, so that nothing missed while it was down is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings

from accounts.models import Account
from execution.aster.streams.frames import StreamFrameError
from execution.aster.streams.user_events import (
    AccountConfigUpdate,
    AccountUpdate,
    ListenKeyExpired,
    MarginCall,
    OrderTradeUpdate,
    PositionRow,
    UserEvent,
    parse_user_frame,
)
from execution.exceptions import ExecutionError, InvalidTransition
from execution.models import ReconciliationRun, ReconciliationStatus
from execution.services.adapters.base import ExecutionAdapter
from execution.services.adapters.factory import get_execution_adapter
from execution.services.parity.funding import record_funding
from execution.services.parity.legs import record_leg_fill
from execution.services.protection import cancel_legs_left_resting
from execution.services.reconciliation import reconcile_account
from execution.services.user_stream.account_updates import apply_account_update, position_mismatches
from execution.services.user_stream.order_closures import apply_order_closed
from execution.services.user_stream.order_fills import apply_execution
from execution.services.user_stream.outcome import Applied, UserEventRejected

logger = logging.getLogger(__name__)

CLOSED_STATUSES = ("CANCELED", "EXPIRED", "REJECTED")
RESYNC_ATTEMPTS = 3


def apply_user_event(
    *, account_id: int, event: UserEvent, adapter: ExecutionAdapter | _LazyAdapter | None = None
) -> Applied:
    """Apply one event of a live account. Raises UserEventRejected for an event that contradicts
    what it names (nothing written)."""
    lazy = adapter if isinstance(adapter, _LazyAdapter) else _LazyAdapter(account_id, adapter)
    if isinstance(event, OrderTradeUpdate):
        return _apply_order_update(account_id, event, lazy)
    if isinstance(event, AccountUpdate):
        applied = apply_account_update(account_id=account_id, event=event)
        record_funding(account_id=account_id, event=event)  # parity of a FUNDING_FEE settlement
        return applied
    if isinstance(event, MarginCall):
        logger.warning("margin call for account %s: %s", account_id, [p.symbol for p in event.positions])
        return Applied("ignored", detail="margin call (advisory)")
    if isinstance(event, AccountConfigUpdate | ListenKeyExpired):
        return Applied("ignored")  # the connection handles an expired key; leverage is set per order
    return Applied("ignored")


def _apply_order_update(account_id: int, event: OrderTradeUpdate, adapter: _LazyAdapter) -> Applied:
    if event.is_fill:
        booked = apply_execution(account_id=account_id, event=event)
        if booked.legs_made_final:  # after the commit: the sibling (or every leg) cancelled there too
            failed = cancel_legs_left_resting(adapter=adapter.get(), account=adapter.get().account)
            if failed:
                booked.applied.reconcile = True
        record_leg_fill(account_id=account_id, event=event, trade=booked.trade)  # parity: after the sibling's cancel
        return booked.applied
    if event.execution_type in ("CANCELED", "EXPIRED") or event.status in CLOSED_STATUSES:
        return apply_order_closed(account_id=account_id, event=event, adapter=adapter.get())
    return Applied("ignored", detail=f"{event.execution_type} {event.status}")


class _LazyAdapter:
    """The account's adapter, made only when an event needs the exchange."""

    def __init__(self, account_id: int, adapter: ExecutionAdapter | None) -> None:
        self.account_id = account_id
        self.adapter = adapter

    def get(self) -> ExecutionAdapter:
        if self.adapter is None:
            self.adapter = get_execution_adapter(Account.objects.get(pk=self.account_id))
        return self.adapter


def resync_account(
    account_id: int, *, adapter: ExecutionAdapter | None = None, sleep: Callable[[float], None] = time.sleep
) -> ReconciliationRun | None:
    """Reconcile the account over REST (the stream's every connect). A run that finds another
    one holding the account waits for it and tries again, so the connection's events are
    applied after a comparison that started after the connect."""
    account = Account.objects.get(pk=account_id)
    if account.is_paper_trading:
        return None
    run = None
    for attempt in range(RESYNC_ATTEMPTS):
        run = reconcile_account(account, adapter=adapter, sleep=sleep)
        if run.status != ReconciliationStatus.SKIPPED:
            break
        sleep(0.5 * (attempt + 1))
    # A run that was skipped, or could not read the exchange, compared nothing: the gap is unchecked.
    if (
        run is None
        or run.status == ReconciliationStatus.SKIPPED
        or (run.status == ReconciliationStatus.FAILED and not run.items.exists())
    ):
        message = run.message if run is not None else "no run"
        raise ExecutionError(f"account {account_id} could not be resynced: {message}", code="RESYNC_FAILED")
    return run


@dataclass
class ApplierCounters:
    applied: int = 0
    malformed: int = 0
    rejected: int = 0
    failed: int = 0
    reconciles: int = 0
    actions: dict[str, int] = field(default_factory=dict)


class AccountEventApplier:
    """One account's events, in order, one at a time (see the module's docstring). Not thread-safe:
    one stream connection drives it, from one worker thread at a time."""

    def __init__(
        self,
        account_id: int,
        *,
        adapter: ExecutionAdapter | None = None,
        grace_seconds: float | None = None,
        reconcile: Callable[[int], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account_id = account_id
        self._adapter = _LazyAdapter(account_id, adapter)  # made once, when an event first needs the exchange
        self.grace_seconds = settings.USER_STREAM_MISMATCH_GRACE_SECONDS if grace_seconds is None else grace_seconds
        self._reconcile = reconcile or (lambda account_id: resync_account(account_id, adapter=self._adapter.get()))
        self._clock = clock
        self.counters = ApplierCounters()
        self.listen_key_expired = False
        self._remote_rows: dict[str, PositionRow] = {}  # the latest ACCOUNT_UPDATE row per symbol
        self._mismatch_since: float | None = None

    def apply_frames(self, frames: Iterable[str | bytes]) -> list[Applied]:
        events = []
        for text in frames:
            try:
                event = parse_user_frame(text)
            except StreamFrameError as exc:
                self.counters.malformed += 1
                logger.warning("account %s: malformed user-data frame dropped: %s", self.account_id, exc)
                continue
            if event is not None:
                events.append(event)
        return self.apply_events(events)

    def apply_events(self, events: Iterable[UserEvent]) -> list[Applied]:
        results = []
        wants_reconcile = False
        for event in sorted(events, key=lambda e: e.event_time_ms):  # stable: equal times keep arrival order
            if isinstance(event, ListenKeyExpired):
                self.listen_key_expired = True
            applied = self._apply_one(event)
            if applied is None:
                continue
            results.append(applied)
            if isinstance(event, AccountUpdate):
                self._remember_positions(event)
            elif applied.reconcile:
                wants_reconcile = True
        self.check_positions(force=wants_reconcile)
        return results

    def _apply_one(self, event: UserEvent) -> Applied | None:
        try:
            applied = apply_user_event(account_id=self.account_id, event=event, adapter=self._adapter)
        except UserEventRejected as exc:
            self.counters.rejected += 1
            logger.error("account %s: user-data event rejected (nothing written): %s", self.account_id, exc)
            return None
        except (ExecutionError, InvalidTransition) as exc:
            # Another writer got there first (a compare-and-set lost), or the exchange failed:
            # nothing of this event was committed; reconciliation compares everything.
            self.counters.failed += 1
            logger.error("account %s: user-data event not applied: %s", self.account_id, exc)
            return Applied("failed", reconcile=True, detail=str(exc))
        self.counters.applied += 1
        self.counters.actions[applied.action] = self.counters.actions.get(applied.action, 0) + 1
        return applied

    def _remember_positions(self, event: AccountUpdate) -> None:
        for row in event.positions:
            self._remote_rows[row.symbol] = row

    @property
    def mismatch_pending(self) -> bool:
        """A position differs and its grace period runs: `check_positions` must be called again."""
        return self._mismatch_since is not None

    def check_positions(self, *, force: bool = False) -> bool:
        """Compare the exchange's last reported positions with ours; reconcile when an event
        asked for it, or when a difference has outlived the grace period. Returns True if it
        reconciled. The stream calls this after every batch and on a timer."""
        mismatches = position_mismatches(account_id=self.account_id, rows=list(self._remote_rows.values()))
        now = self._clock()
        if not mismatches:
            self._mismatch_since = None
        elif self._mismatch_since is None:
            self._mismatch_since = now
        due = self._mismatch_since is not None and now - self._mismatch_since >= self.grace_seconds
        if not (force or due):
            return False
        if mismatches:
            logger.warning("account %s: positions differ from the exchange: %s", self.account_id, mismatches)
        self.counters.reconciles += 1
        self._reconcile(self.account_id)
        # The run read the exchange afresh: the rows it superseded no longer count.
        self._remote_rows.clear()
        self._mismatch_since = None
        return True
