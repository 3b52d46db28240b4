"""Integration tokens: hashed at rest, shown once, revocable, expiring.

Integrations send `Authorization: Token <token>` as before; the database
keeps only a SHA-512 digest and a short lookup prefix.
"""

import io
import re
from datetime import timedelta

import pytest
import yaml
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken

TOKEN_LINE = re.compile(r"Authorization: Token (\S+?)'")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def token_from(output: str) -> str:
    match = TOKEN_LINE.search(output)
    assert match, output
    return match.group(1)


def api_get(client, token: str, path: str = "/api/v1/devices"):  # noqa: ANN001, ANN201
    return client.get(path, HTTP_AUTHORIZATION=f"Token {token}")


@pytest.fixture
def ci_bot_token(db) -> str:
    return token_from(run("homepot_user", "ci-bot", "--role", "operator", "--token"))


def test_homepot_user_prints_a_token_that_works_on_the_api(client, ci_bot_token):
    response = api_get(client, ci_bot_token)

    assert response.status_code == 200
    assert ci_bot_token.startswith("hpt_")


def test_homepot_token_issues_another_token_for_an_existing_user(client, ci_bot_token):
    second = token_from(run("homepot_token", "ci-bot"))

    assert second != ci_bot_token
    assert api_get(client, second).status_code == 200
    assert api_get(client, ci_bot_token).status_code == 200


def test_homepot_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user 'nobody'"):
        run("homepot_token", "nobody")


def test_no_token_is_stored_in_plain_text(ci_bot_token):
    second = token_from(run("homepot_token", "ci-bot", "--expires-days", "7"))
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)

    for token in (ci_bot_token, second):
        assert token not in dump.getvalue()
        # the secret part either: only a short lookup prefix is stored
        assert token[4:] not in dump.getvalue()
    # and no table outside the models (a leftover authtoken_token) holds one
    assert "authtoken_token" not in connection.introspection.table_names()


def test_a_revoked_token_is_refused(client, ci_bot_token):
    output = run("homepot_token", "ci-bot", "--revoke")

    assert "Revoked 1 token" in output
    response = api_get(client, ci_bot_token)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_reissuing_with_homepot_user_revokes_the_old_token(client, ci_bot_token):
    new = token_from(run("homepot_user", "ci-bot", "--role", "operator", "--token"))

    assert api_get(client, ci_bot_token).status_code == 401
    assert api_get(client, new).status_code == 200


def test_an_expired_token_is_refused(client, ci_bot_token):
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))

    response = api_get(client, ci_bot_token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_tokens_expire_after_the_configured_lifetime(ci_bot_token, settings):
    token = AuthToken.objects.get()

    expected = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    assert abs((token.expiry - expected).total_seconds()) < 60
    run("homepot_token", "ci-bot", "--expires-days", "0")
    assert AuthToken.objects.filter(expiry__isnull=True).count() == 1


def test_a_token_of_a_deactivated_user_is_refused(client, ci_bot_token):
    User.objects.filter(username="ci-bot").update(is_active=False)

    assert api_get(client, ci_bot_token).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Token hpt_\x00abc",
        "Token hpt_\u00e9\u00e9\u00e9",
        "Token " + "a" * 5000,
        "Token short",
        "Token",
        "Token a b",
    ],
)
def test_malformed_tokens_are_a_clear_401(client, db, header):
    response = client.get("/api/v1/devices", HTTP_AUTHORIZATION=header)

    # (a NUL in any header may already be refused with 400 before authentication)
    assert response.status_code == 401 or ("\x00" in header and response.status_code == 400)
    assert response.json()["detail"]


def test_the_schema_documents_the_token_header(client, db):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi")

    schema = yaml.safe_load(response.content)
    schemes = schema["components"]["securitySchemes"]
    token_schemes = [
        scheme
        for scheme in schemes.values()
        if scheme.get("type") == "apiKey" and scheme.get("name") == "Authorization"
    ]
    assert token_schemes, schemes
    assert "Token" in token_schemes[0]["description"]
    devices = schema["paths"]["/api/v1/devices"]["get"]
    names = {name for requirement in devices["security"] for name in requirement}
    assert any(schemes[name] in token_schemes for name in names)


def test_a_legacy_plain_token_is_hashed_and_keeps_working(client, transactional_db):
    """The migration off DRF's authtoken: existing integrations keep their token."""
    # (outside a test transaction, as migrations run: SQLite's schema editor needs that)
    operator = User.objects.create_user("legacy-bot", password="pw", is_staff=True)
    operator.groups.set([Group.objects.get(name="operator")])
    from homepot.migrations import _legacy_tokens

    legacy = "0123456789abcdef0123456789abcdef01234567"
    with connection.schema_editor() as editor:
        editor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
            if connection.vendor == "postgresql"
            else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created datetime NOT NULL, user_id integer NOT NULL)"
        )
        editor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [legacy, timezone.now(), operator.pk],
        )

        _legacy_tokens.hash_legacy_tokens(editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert api_get(client, legacy).status_code == 200
    stored = AuthToken.objects.get(user=operator)
    assert legacy not in (stored.digest, stored.token_key)


def test_a_token_acts_with_its_users_permissions(client, viewer, operator, api_token):
    body = {"site_id": "lab-9", "name": "Lab 9"}

    as_viewer = client.post(
        "/api/v1/sites", body, format="json", HTTP_AUTHORIZATION=f"Token {api_token(viewer)}"
    )
    as_operator = client.post(
        "/api/v1/sites", body, format="json", HTTP_AUTHORIZATION=f"Token {api_token(operator)}"
    )

    assert as_viewer.status_code == 403
    assert as_operator.status_code == 201
