"""Each control has its own throttle scope (settings.API_THROTTLE_RATES: scope -> "N/period").

DRF's ScopedRateThrottle reads its rates once, at import; this one reads the setting on every
request, so a deployment (or a test) can change a rate without a restart of the module. A scope
without a rate is not throttled.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle


class ControlThrottle(ScopedRateThrottle):
    def get_rate(self) -> str | None:
        rates: dict[str, str] = getattr(settings, "API_THROTTLE_RATES", {})
        return rates.get(self.scope) if self.scope else None

    def allow_request(self, request: Any, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return bool(super(ScopedRateThrottle, self).allow_request(request, view))
