"""The API's one exception handler (settings: REST_FRAMEWORK["EXCEPTION_HANDLER"]).

- DRF's own errors keep DRF's bodies (serializer errors: `{"field": ["message"]}`).
- Django's ValidationError (raised by services) becomes the same 400 field-message body.
- RiskCheckFailed, IdempotencyMismatch and StateConflict (NO_POSITION, ...) are 409, any other
  ExecutionError 502, all as `{"detail": message, "code": code}`.

Only the exception's own message and code are sent: never its details, cause or traceback.
Anything else is left to Django (a bare 500 without DEBUG), whose 400/404/500 pages are JSON
under /api/ (api_bad_request, api_not_found, api_server_error: config.urls's handlers).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from execution.exceptions import ExecutionError, IdempotencyMismatch, RiskCheckFailed, StateConflict

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        return drf_exception_handler(exceptions.ValidationError(field_messages(exc)), context)
    if isinstance(exc, RiskCheckFailed | IdempotencyMismatch | StateConflict):
        return error_response(exc, status.HTTP_409_CONFLICT)
    if isinstance(exc, ExecutionError):
        logger.warning("API request failed: %s", exc)
        return error_response(exc, status.HTTP_502_BAD_GATEWAY)
    return drf_exception_handler(exc, context)


def field_messages(exc: DjangoValidationError) -> dict[str, Any]:
    """`{"field": ["message", ...]}` as DRF writes it; errors of no field go under non_field_errors."""
    detail = get_error_detail(exc)
    if isinstance(detail, dict):
        return {(api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else key): v for key, v in detail.items()}
    return {api_settings.NON_FIELD_ERRORS_KEY: detail}


def error_response(exc: ExecutionError, status_code: int) -> Response:
    set_rollback()
    return Response({"detail": exc.message, "code": exc.code}, status=status_code)


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 (a URL no route matches, e.g. /api/positions/1.5/): JSON under /api/, as DRF's
    own 404s are; Django's page elsewhere (config.urls: handler404)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception or Http404())


def api_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (e.g. a malformed Host header or too many form fields): JSON under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception or SuspiciousOperation())


def api_server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 (a bug: logged by Django with its traceback): JSON under /api/, no details."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
