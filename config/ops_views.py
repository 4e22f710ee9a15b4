"""Operations endpoints: liveness, readiness and Prometheus metrics (outside /api/, no session).

`/healthz` answers while the process can answer at all (no database). `/readyz` runs the named
checks of `execution.services.health` and answers 503 when any fails. `/metrics` is Prometheus
text; with METRICS_TOKEN set it needs `Authorization: Bearer <token>`, otherwise it answers
loopback clients only.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from execution.services.health import DatabaseCollector, readiness

LOOPBACK = frozenset({"127.0.0.1", "::1"})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    report = readiness()
    return JsonResponse(report, status=200 if report["ready"] else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _metrics_allowed(request):
        return JsonResponse(
            {"detail": "metrics need the bearer token (METRICS_TOKEN) or a loopback client"}, status=403
        )
    return HttpResponse(generate_latest(_ScrapeRegistry()), content_type=CONTENT_TYPE_LATEST)


def _metrics_allowed(request: HttpRequest) -> bool:
    token: str = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())
    return request.META.get("REMOTE_ADDR", "") in LOOPBACK


class _ScrapeRegistry:
    """This process's series (or every process's, in multiprocess mode) and the database gauges."""

    def collect(self) -> Iterator[Any]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus-client is untyped here
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        yield from DatabaseCollector().collect()
