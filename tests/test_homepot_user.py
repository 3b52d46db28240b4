"""manage.py homepot_user --token-only: a token for scripts (API_TOKEN=$(...))."""

import io
import re

from django.contrib.auth.models import User
from django.core.management import call_command


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_token_only_prints_nothing_but_a_working_token(client, db):
    output = run("homepot_user", "ci-bot", "--role", "operator", "--token-only")

    token = output.strip()
    assert re.fullmatch(r"hpt_[0-9a-f]{64}", token), output
    assert output == token + "\n"
    response = client.get("/api/v1/devices", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert not User.objects.get(username="ci-bot").has_usable_password()


def test_token_only_leaves_an_existing_users_password_alone(client, db):
    password = run("homepot_user", "alice", "--role", "operator").rsplit(": ", 1)[1].strip()

    token = run("homepot_user", "alice", "--role", "operator", "--token-only").strip()

    assert User.objects.get(username="alice").check_password(password)
    response = client.get("/api/v1/devices", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
