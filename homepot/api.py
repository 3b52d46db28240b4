"""Shared REST pieces: pagination, error responses, permission helpers."""

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from homepot.errors import CredentialRejected, ServiceError


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        headers = (
            {"WWW-Authenticate": "EnrollmentToken"} if isinstance(exc, CredentialRejected) else {}
        )
        return Response(
            {"detail": exc.message, "code": exc.code}, status=exc.status_code, headers=headers
        )
    return drf_exception_handler(exc, context)


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
