"""Shared REST pieces: pagination, error responses, permission helpers."""

import logging
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from homepot.errors import CredentialRejected, ServiceError
from homepot.outage import outage_of, retry_after_seconds

logger = logging.getLogger(__name__)


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error as JSON with a machine-readable code; a backend outage as 503."""
    if isinstance(exc, ServiceError):
        headers = (
            {"WWW-Authenticate": "EnrollmentToken"} if isinstance(exc, CredentialRejected) else {}
        )
        if exc.retry_after_seconds is not None:
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return Response(
            {"detail": exc.message, "code": exc.code}, status=exc.status_code, headers=headers
        )
    outage = outage_of(exc)
    if outage is not None:
        code, message = outage
        logger.warning("answering 503 %s: %s: %s", code, type(exc).__name__, exc)
        headers = {"Retry-After": str(retry_after_seconds())}
        return Response({"detail": message, "code": code}, status=503, headers=headers)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        _add_code(response, exc)
    return response


def _add_code(response: Response, exc: APIException) -> None:
    """{"detail": ...} gets the exception's code beside it (DRF leaves it out)."""
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        codes = exc.get_codes()
        if isinstance(codes, str):
            data["code"] = codes


class HasPermissions(BasePermission):
    """Django model permissions named per HTTP method on the view:
    ``required_permissions = {"GET": ["devices.view_site"], "POST": [...]}``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated and hasattr(user, "has_perms")):
            return False
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = getattr(view, "required_permissions", {}).get(method)
        if needed is None:
            return False
        return user.has_perms(needed)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare, naming them."""

    def validate(self, attrs: dict) -> dict:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return attrs
