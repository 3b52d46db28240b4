"""OpenAPI generation: every operation documents the errors the stack around
its view can answer, so the schema is as strict as the server (checked by the
schemathesis run in tests/test_api_schema_fuzz.py).

Which errors an operation can answer follows from what it is: authenticated
operations can be refused (401/403) or throttled (429); operations with a body
can be malformed (400), too large (413) or of another media type (415);
operations with path parameters or lists with pages can miss (404); every
operation can find a backend unavailable (503). Errors particular to a view
(409 for a state conflict, 422 for a reused idempotency key) are named by the
view's ``error_statuses``.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DESCRIPTIONS = {
    400: "The request is malformed; the body names each bad field.",
    401: "No valid credentials.",
    403: "The credentials do not allow this.",
    404: "No such object (or not one the caller may see).",
    409: "The object's state does not allow this.",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    422: "The request repeats an idempotency key with another body or target.",
    429: "Too many requests or failed attempts; retry after the Retry-After header.",
    503: "A backend (database or cache) is unavailable; retry after the Retry-After header.",
}


class ErrorSerializer(serializers.Serializer):
    """An error: what went wrong and a stable code to branch on."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class ValidationErrorSerializer(serializers.Serializer):
    """Field errors: each bad field (a dotted path for nested ones) with its
    messages; errors not about one field are under ``detail`` or
    ``non_field_errors``, with a ``code`` where there is one."""

    detail = serializers.CharField(required=False)
    code = serializers.CharField(required=False)


class HomepotAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status in sorted(self._error_statuses()):
            if str(status) not in responses:
                responses[str(status)] = self._error_response(status, direction)
        return responses

    def _error_statuses(self) -> set[int]:
        statuses = {503} | set(getattr(self.view, "error_statuses", ()))
        if self.get_auth():
            statuses |= {401, 403, 429}
        if self.method in BODY_METHODS:
            statuses |= {400, 413, 415}
        if self._get_parameters() or "{" in self.path:
            statuses.add(400)
        if "{" in self.path or self._is_list_view():
            statuses.add(404)
        return statuses

    def _error_response(self, status: int, direction: str) -> dict[str, Any]:
        serializer = ValidationErrorSerializer if status == 400 else ErrorSerializer
        response = OpenApiResponse(response=serializer, description=DESCRIPTIONS[status])
        schema = self._get_response_for_code(response, str(status), direction=direction)
        if status in (429, 503):
            schema["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
            }
        return schema
