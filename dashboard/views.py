"""Pages only: the dashboard reads and acts through the REST API, so these views render a template
and the page's settings, and nothing else (no data path of their own)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie


def page_config() -> dict[str, object]:
    """What the page's script needs to know: where the API is, and the optional panels."""
    return {
        "api": "/api/",
        "login": reverse("dashboard:login"),
        "parity_panel": bool(getattr(settings, "DASHBOARD_PARITY_PANEL", False)),
        "poll_ms": int(getattr(settings, "DASHBOARD_POLL_MS", 1500)),
    }


@login_required
@ensure_csrf_cookie  # the page's writes to the API send the CSRF token (session auth)
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", {"config": page_config()})
