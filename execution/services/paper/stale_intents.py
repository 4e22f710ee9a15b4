"""Paper intents left in flight by a process that stopped between reserving and booking.

A paper order is simulated inside the request that reserved it: an intent still `submitting` (or
`unknown`) after EXECUTION_INTENT_STALE_SECONDS belongs to a process that died, and its simulated
fill was never booked. It is cancelled (audited), which also releases the margin it reserved.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from accounts.audit import bulk_transition
from execution.models import TRADE_IN_FLIGHT, Trade, TradeStatus

STALE_MESSAGE = "left in flight by a stopped process: its simulated fill was never booked"


def cancel_stale_paper_intents(now: datetime) -> int:
    stale = Trade.objects.filter(
        status__in=TRADE_IN_FLIGHT,
        created_at__lt=now - timedelta(seconds=settings.EXECUTION_INTENT_STALE_SECONDS),
        account__is_paper_trading=True,
    )
    with transaction.atomic():
        rows = stale.select_for_update(skip_locked=True)
        ids = list(rows.values_list("pk", flat=True))
        if not ids:
            return 0
        bulk_transition(
            Trade.objects.filter(pk__in=ids),
            to_status=TradeStatus.CANCELLED,
            now=now,
            values={"error_code": "STALE_INTENT", "error_message": STALE_MESSAGE},
            message=STALE_MESSAGE,
        )
    return len(ids)
