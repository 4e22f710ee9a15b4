"""Alerts: what a person must look at, recorded (Alert) and, when ALERT_WEBHOOK_URL is set,
POSTed there as JSON by a Celery task with retries and backoff.

- `raise_alert(account=, kind=, message=, cause=)` records one; the same `cause` within
  ALERT_DEDUPE_SECONDS raises nothing new (a flapping stream, a run failing every minute).
- Raised on: a protection failure (protection.handle_protection_failure, controls' amend), a
  liquidation (paper: paper.liquidation; live: `alert_liquidation`, for the user-data stream's
  liquidation path), an account moved to reducing or halted (accounts.services' signal), an
  intent unresolved after ALERT_UNKNOWN_INTENT_SECONDS and a stream down for more than
  ALERT_STREAM_DOWN_SECONDS (`check_alert_conditions`, a beat task), an unrepaired
  reconciliation difference (reconciliation.runs).
- Secrets never appear: the account's own secrets and anything shaped like a key are redacted
  from every message, and the webhook URL (which often embeds a token) is never logged.

The payload suits a generic receiver (`kind`, `account`, `message`, ...) and carries a `text`
line, so that a Slack incoming webhook (or a Telegram bot relay) shows it as it is.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, TradingState
from execution.models import Alert, AlertKind, Position, StreamKind, StreamStatus, Trade, TradeStatus

logger = logging.getLogger(__name__)

MAX_MESSAGE = 2000
REDACTED = "[redacted]"
# A private key or an API secret shaped string: 0x and 64 hex digits, or 40+ hex/base64 characters.
SECRET_SHAPES = re.compile(r"0x[0-9a-fA-F]{64}\b|\b[0-9a-fA-F]{40,}\b|\b[A-Za-z0-9+/_-]{48,}={0,2}")


class DeliveryFailed(Exception):
    """The webhook did not accept the alert (retried by the task)."""


def redact(text: str, account: Account | None = None) -> str:
    """`text` without the account's secrets or anything shaped like a key."""
    if account is not None:
        for name in Account.SECRET_FIELDS:
            try:
                value = getattr(account, name).reveal()
            except Exception:  # an undecryptable value is no value to leak
                value = ""
            if value and len(value) >= 4:
                text = text.replace(value, REDACTED)
    return SECRET_SHAPES.sub(REDACTED, text)[:MAX_MESSAGE]


def cause_key(cause: str) -> str:
    return "alert-cause:" + hashlib.sha256(cause.encode()).hexdigest()[:32]


def raise_alert(*, account: Account | None, kind: str, message: str, cause: str) -> Alert | None:
    """Record an alert unless the same `cause` was alerted within ALERT_DEDUPE_SECONDS; queue its
    delivery (after commit) when ALERT_WEBHOOK_URL is set. Returns the alert, or None if deduplicated.
    Never raises for a delivery problem: an alert must not break the path that raised it."""
    if kind not in AlertKind.values:
        raise ValueError(f"unknown alert kind {kind!r}")
    window = settings.ALERT_DEDUPE_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    cause = cause[:200]
    if Alert.objects.filter(cause=cause, created_at__gte=since).exists():
        return None
    # Two raisers racing past the check: the cache's atomic add lets one through.
    if not cache.add(cause_key(cause), 1, timeout=max(int(window), 1)):
        return None
    alert = Alert.objects.create(account=account, kind=kind, message=redact(message, account), cause=cause)
    logger.warning("alert %s (%s) for account %s: %s", alert.pk, kind, account.pk if account else "-", alert.message)
    if settings.ALERT_WEBHOOK_URL:
        transaction.on_commit(lambda: _enqueue(alert.pk))
    return alert


DELIVER_TASK = "execution.deliver_alert"  # execution.tasks.deliver_alert, sent by name (tasks import services)


def _enqueue(alert_id: int) -> None:
    try:
        current_app.send_task(DELIVER_TASK, args=[alert_id])
    except Exception:  # the broker is down: the alert is recorded; the next check retries undelivered ones
        logger.exception("alert %s: could not queue its delivery", alert_id)


def payload(alert: Alert) -> dict[str, Any]:
    account = alert.account
    who = f"account {account.pk} ({account.name}, {account.mode})" if account is not None else "service"
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "account": account.pk if account is not None else None,
        "account_name": account.name if account is not None else None,
        "mode": account.mode if account is not None else None,
        "message": alert.message,
        "created_at": alert.created_at.isoformat(),
        "text": f"[{alert.get_kind_display()}] {who}: {alert.message}",  # Slack / Telegram
    }


def deliver(alert_id: int) -> bool:
    """POST one alert to ALERT_WEBHOOK_URL (no transaction held). True when delivered, False when
    there was nothing to do (already delivered, or no URL); raises DeliveryFailed otherwise, for
    the task to retry (the task counts outcomes in execution.metrics.ALERT_DELIVERIES)."""
    alert = Alert.objects.select_related("account").get(pk=alert_id)
    url = settings.ALERT_WEBHOOK_URL
    if alert.delivered_at is not None or not url:
        return False
    timeout = settings.ALERT_WEBHOOK_TIMEOUT_SECONDS
    lock = f"alert-delivering:{alert.pk}"
    if not cache.add(lock, 1, timeout=int(timeout) + 5):  # a requeued copy racing a retry: one POST
        raise DeliveryFailed("another delivery of this alert is under way")
    try:
        Alert.objects.filter(pk=alert.pk).update(attempts=alert.attempts + 1)
        try:
            response = requests.post(url, json=payload(alert), timeout=timeout)
            error = "" if 200 <= response.status_code < 300 else f"the webhook answered {response.status_code}"
        except requests.RequestException as exc:
            error = f"the webhook could not be reached ({type(exc).__name__})"  # never the URL: it may hold a token
        if error:
            Alert.objects.filter(pk=alert.pk).update(last_error=error[:300])
            logger.warning("alert %s not delivered: %s", alert.pk, error)
            raise DeliveryFailed(error)
        Alert.objects.filter(pk=alert.pk).update(delivered_at=timezone.now(), last_error="")
        return True
    finally:
        cache.delete(lock)


# --------------------------------------------------------------------------- raisers


def alert_protection_failed(*, account: Account, position: Position | None, symbol: str, message: str) -> None:
    cause = f"protection:{account.pk}:{position.pk if position is not None else symbol}"
    raise_alert(account=account, kind=AlertKind.PROTECTION_FAILED, message=f"{symbol}: {message}", cause=cause)


def alert_liquidation(*, account: Account, position: Position, price: Decimal) -> None:
    """A position was liquidated (paper: paper.liquidation; live: to be called by the user-data
    stream's liquidation path)."""
    raise_alert(
        account=account,
        kind=AlertKind.LIQUIDATION,
        message=f"{position.side} {position.quantity} {position.symbol} liquidated at {price}",
        cause=f"liquidation:{position.pk}",
    )


def alert_trading_state(*, account: Account, previous: str, state: str, reason: str) -> None:
    """An account moved to reducing or halted (accounts.services.trading_state_changed)."""
    if state not in (TradingState.REDUCING, TradingState.HALTED):
        return
    raise_alert(
        account=account,
        kind=AlertKind.TRADING_STATE,
        message=f"trading state {previous} -> {state}: {reason or 'no reason given'}",
        cause=f"trading_state:{account.pk}:{previous}->{state}",
    )


def alert_reconciliation(*, account: Account, run_id: int, summary: str) -> None:
    raise_alert(
        account=account,
        kind=AlertKind.RECONCILIATION,
        message=f"reconciliation run {run_id} could not repair: {summary}",
        cause=f"reconciliation:{account.pk}:{summary[:120]}",
    )


def check_alert_conditions(*, now: datetime | None = None) -> dict[str, int]:
    """Beat: intents still unresolved after ALERT_UNKNOWN_INTENT_SECONDS, streams down for more
    than ALERT_STREAM_DOWN_SECONDS, and undelivered alerts queued again. A constant number of
    queries plus one insert per new alert."""
    now = now or timezone.now()
    raised = {"unknown_intents": 0, "streams_down": 0, "requeued": 0}
    cutoff = now - timedelta(seconds=settings.ALERT_UNKNOWN_INTENT_SECONDS)
    stuck = Trade.objects.filter(
        status__in=[TradeStatus.UNKNOWN, TradeStatus.SUBMITTING], created_at__lte=cutoff
    ).select_related("account")[:100]
    for trade in stuck:
        alert = raise_alert(
            account=trade.account,
            kind=AlertKind.UNKNOWN_INTENT,
            message=f"order {trade.client_order_id} ({trade.side} {trade.quantity} {trade.symbol}) is still "
            f"{trade.status} since {trade.created_at:%Y-%m-%d %H:%M:%S} UTC",
            cause=f"unknown_intent:{trade.pk}",
        )
        raised["unknown_intents"] += alert is not None
    down_after = now - timedelta(seconds=settings.ALERT_STREAM_DOWN_SECONDS)
    down = StreamStatus.objects.filter(
        Q(connected=False, updated_at__lte=down_after)
        | Q(kind=StreamKind.MARKET, connected=True, last_frame_at__lte=down_after)
    ).select_related("account")
    for stream in down:
        what = f"the user-data stream of account {stream.account_id}" if stream.kind == StreamKind.USER else stream.name
        since = stream.last_frame_at if stream.connected else stream.updated_at
        alert = raise_alert(
            account=stream.account,
            kind=AlertKind.STREAM_DOWN,
            message=f"{what} is down since {since:%Y-%m-%d %H:%M:%S} UTC" if since else f"{what} is down",
            cause=f"stream_down:{stream.name}",
        )
        raised["streams_down"] += alert is not None
    if settings.ALERT_WEBHOOK_URL:
        retry_window = now - timedelta(seconds=settings.ALERT_DEDUPE_SECONDS)
        stale = now - timedelta(seconds=settings.ALERT_CHECK_SECONDS * 4)
        for alert_id in Alert.objects.filter(
            delivered_at__isnull=True, created_at__gte=retry_window, created_at__lte=stale
        ).values_list("pk", flat=True)[:100]:
            _enqueue(alert_id)
            raised["requeued"] += 1
    return raised
