"""The OpenAPI schema tells the truth: schemathesis generates requests for every
operation (valid and invalid) as a device and as an operator, through the real
WSGI stack, and checks that the server never answers 5xx and that every status
code, content type and body it answers is the one the schema documents.

Bounded (a few examples per operation, no deadline) so it fits the fast suite;
raise HOMEPOT_FUZZ_EXAMPLES for a deeper run by hand.
"""

import json
import os
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings

from homepot.api_tokens import api_token_issue

EXAMPLES = int(os.environ.get("HOMEPOT_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _api_schema() -> schemathesis.BaseSchema:
    # pytest-django has set Django up before test modules are collected.
    document = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(document)))


schema = _api_schema()
app = WSGIHandler()


@pytest.fixture(autouse=True)
def _keep_the_test_transaction() -> Iterator[None]:
    # A real WSGI handler closes the database connection after each request,
    # which would end the test's transaction; Django's test client does the same.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@schema.parametrize()
@FUZZ
def test_as_a_device_the_server_answers_only_what_the_schema_documents(case, agent) -> None:  # noqa: ANN001
    case.call_and_validate(
        app=app,
        headers={"X-Device-ID": agent.device.public_id, "X-API-Key": agent.api_key},
        checks=CHECKS,
    )


@schema.parametrize()
@FUZZ
def test_as_an_operator_the_server_answers_only_what_the_schema_documents(case, admin_user) -> None:  # noqa: ANN001
    token = api_token_issue(user=admin_user, expires_in=None)
    case.call_and_validate(app=app, headers={"Authorization": f"Token {token}"}, checks=CHECKS)
