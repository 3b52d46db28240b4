"""The API's outer guard: refuse hostile input before any other work, and make
every answer under /api/ JSON.

It runs first, before sessions, authentication and views, so:

- a body nested too deeply, over the upload limit, or a NUL in the query
  string or a header is refused before anything (a key check, a database
  query) is spent on it;
- whatever answers an /api/ request with an error that is not JSON (Django's
  404 page for an unknown path or a trailing slash, its 400/413 for a
  suspicious request, a 500 page) is answered as JSON {"detail", "code"}
  with the same status instead;
- an exception a view did not handle becomes a JSON 503 when a backend is
  down (homepot.outage) and a JSON 500 otherwise.
"""

import logging
import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse

from homepot.outage import outage_response
from homepot.parsers import json_too_deep

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A code for each status Django or a proxy can answer without DRF.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "unavailable",
}
# Headers of the replaced response that still mean something for the JSON one.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Vary")


def json_error(status: int, detail: str, code: str | None = None) -> JsonResponse:
    code = code or STATUS_CODES.get(status, "error")
    return JsonResponse({"detail": detail, "code": code}, status=status)


def _is_json(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "")
    return content_type.startswith("application/") and "json" in content_type


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _refuse_early(request: HttpRequest) -> JsonResponse | None:
    """A 4xx for input no part of the server should ever see, else None."""
    for name, value in request.META.items():
        if name.startswith("HTTP_") and isinstance(value, str) and _has_nul(value):
            header = name[5:].replace("_", "-").title()
            return json_error(400, f"Header {header} contains a NUL character.", "invalid_string")
    for key, values in request.GET.lists():
        if _has_nul(key) or any(_has_nul(value) for value in values):
            return json_error(400, "The query string contains a NUL character.", "invalid_string")
    if request.method in BODY_METHODS:
        return _refuse_body(request)
    return None


def _refuse_body(request: HttpRequest) -> JsonResponse | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return json_error(400, "Content-Length is not a number.")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return json_error(413, f"At most {limit} bytes per request.", "too_large")
    if length == 0 or "json" not in (request.content_type or ""):
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return json_error(413, f"At most {limit} bytes per request.", "too_large")
    if json_too_deep(body, settings.API_JSON_MAX_DEPTH):
        return json_error(
            400, f"JSON nested deeper than {settings.API_JSON_MAX_DEPTH} levels.", "too_deep"
        )
    return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or _is_json(response):
        return response
    failure = getattr(request, "_homepot_exception", None)
    if failure is not None and (outage := outage_response(failure)) is not None:
        return outage
    status = response.status_code
    data = getattr(response, "data", None)  # a DRF error rendered as HTML (browsable API)
    if isinstance(data, dict | list):
        replaced = JsonResponse(data, status=status, safe=False)
    else:
        replaced = json_error(status, _phrase(status))
    for header in KEPT_HEADERS:
        if header in response:
            replaced[header] = response[header]
    return replaced


class ApiGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        refusal = _refuse_early(request)
        if refusal is not None:
            return refusal
        return _as_json(request, self.get_response(request))

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        """An exception no view handled: 503 for an outage, else a logged JSON 500."""
        if not request.path_info.startswith(API_PREFIX):
            return None
        outage = outage_response(exc)
        if outage is not None:
            return outage
        logger.error(
            "Internal Server Error: %s", request.path, exc_info=exc, extra={"request": request}
        )
        # As Django does for an exception it handles itself (error reporting
        # hooks in, and the test client re-raises it in tests).
        got_request_exception.send(sender=None, request=request)
        return json_error(500, "Internal server error.", "server_error")


def _remember_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # An exception raised outside a view (in another middleware) reaches
    # Django's 500 handler, not process_exception: keep it so the response can
    # still say which backend is down.
    if request is not None:
        request._homepot_exception = sys.exc_info()[1]


got_request_exception.connect(_remember_exception, dispatch_uid="homepot-remember-exception")
