"""Which exceptions mean "a backend is down", and the 503 that answers them.

When Redis or the database cannot be reached, a request cannot be served,
but that is the server's state, not a bug and not the client's fault: the
answer is a JSON 503 with a code naming the backend and a Retry-After, so an
agent backs off and comes back instead of giving up on a 500.
"""

import logging

import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from kombu.exceptions import OperationalError as BrokerOperationalError

logger = logging.getLogger(__name__)

# Checked in this order: a kombu OperationalError can wrap a redis one.
_OUTAGES: list[tuple[tuple[type[BaseException], ...], str, str]] = [
    (
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
         redis.exceptions.ReadOnlyError),
        "cache_unavailable",
        "The cache is unavailable; retry later.",
    ),
    (
        (BrokerOperationalError,),
        "broker_unavailable",
        "The task broker is unavailable; retry later.",
    ),
    (
        (OperationalError, InterfaceError),
        "database_unavailable",
        "The database is unavailable; retry later.",
    ),
]  # fmt: skip


def outage_of(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) if exc means a backend is unavailable, else None."""
    for types, code, message in _OUTAGES:
        if isinstance(exc, types):
            return code, message
    return None


def retry_after_seconds() -> int:
    return settings.API_UNAVAILABLE_RETRY_AFTER_SECONDS


def outage_response(exc: BaseException) -> JsonResponse | None:
    """The JSON 503 for a backend outage, or None if exc is something else."""
    outage = outage_of(exc)
    if outage is None:
        return None
    code, message = outage
    logger.warning("answering 503 %s: %s: %s", code, type(exc).__name__, exc)
    response = JsonResponse({"detail": message, "code": code}, status=503)
    response["Retry-After"] = str(retry_after_seconds())
    return response
