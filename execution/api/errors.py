"""The API's one exception handler (settings: REST_FRAMEWORK["EXCEPTION_HANDLER"]).

- DRF's own errors keep DRF's bodies (serializer errors: `{"field": ["message"]}`).
- Django's ValidationError (raised by services) becomes the same 400 field-message body.
- RiskCheckFailed and IdempotencyMismatch are 409, any other ExecutionError 502, all as
  `{"detail": message, "code": code}`.

Only the exception's own message and code are sent: never its details, cause or traceback.
Anything else is left to Django (a bare 500 without DEBUG).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from execution.exceptions import ExecutionError, IdempotencyMismatch, RiskCheckFailed

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        return drf_exception_handler(exceptions.ValidationError(field_messages(exc)), context)
    if isinstance(exc, RiskCheckFailed | IdempotencyMismatch):
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
