"""The request body's size cap, for every parser (settings.DATA_UPLOAD_MAX_MEMORY_SIZE).

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or `request.POST` is read;
DRF's parsers read the request as a stream, so a JSON body of any size was parsed. This
middleware answers 413 before any view or parser runs when the declared length is over the cap
(the WSGI handler never reads past the declared length, and a body without one is read as empty).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

TOO_LARGE = "REQUEST_TOO_LARGE"


class RequestBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads such a body as empty
        if limit is not None and length > limit:
            return JsonResponse(
                {"detail": f"Request body too large: {length} bytes; the limit is {limit} bytes.", "code": TOO_LARGE},
                status=413,
            )
        return self.get_response(request)
