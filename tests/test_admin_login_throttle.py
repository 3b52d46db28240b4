"""The admin login form is throttled per username and client address together.

Failed attempts from one address lock that username out from that address
only: an attacker elsewhere cannot lock an operator out, and a locked-out
attempt is answered with a clear page, never a 500.
"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

LOGIN = "/admin/login/?next=/admin/"


def attempt(username: str, password: str, address: str, **headers: str):  # noqa: ANN201
    return Client().post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **headers,
    )


def fail(times: int, username: str, address: str, **headers: str) -> None:
    for _ in range(times):
        response = attempt(username, "wrong", address, **headers)
        assert response.status_code == 200  # the form again, with its error
        assert b"Please enter the correct username and password" in response.content


def assert_locked(response) -> None:  # noqa: ANN001
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert b"Too many failed login attempts" in response.content
    assert b"15 minutes" in response.content


def test_the_right_password_logs_in(admin_user):
    response = attempt("ada", "pw-ada", "10.0.0.1")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_five_failures_lock_the_username_at_that_address(admin_user, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    fail(4, "ada", "10.0.0.1")

    assert_locked(attempt("ada", "wrong", "10.0.0.1"))
    # even the right password is refused from there while locked
    assert_locked(attempt("ada", "pw-ada", "10.0.0.1"))


def test_a_lockout_does_not_reach_the_same_user_at_another_address(admin_user):
    fail(4, "ada", "203.0.113.9")
    assert_locked(attempt("ada", "wrong", "203.0.113.9"))

    response = attempt("ada", "pw-ada", "10.0.0.1")

    assert response.status_code == 302


def test_a_lockout_does_not_reach_another_user_at_the_same_address(admin_user, operator):
    fail(4, "ada", "10.0.0.1")
    assert_locked(attempt("ada", "wrong", "10.0.0.1"))

    assert attempt("otto", "pw-otto", "10.0.0.1").status_code == 302


def test_a_forged_forwarded_for_header_does_not_escape_the_lockout(admin_user):
    # No proxy is configured (NUM_PROXIES=0): X-Forwarded-For is the client's word.
    for n in range(4):
        attempt("ada", "wrong", "10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")

    assert_locked(attempt("ada", "wrong", "10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.99"))


def test_behind_a_proxy_the_forwarded_address_is_the_client(admin_user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "172.18.0.2"
    fail(4, "ada", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert_locked(attempt("ada", "wrong", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7"))

    # Another client behind the same proxy is not locked out.
    response = attempt("ada", "pw-ada", proxy, HTTP_X_FORWARDED_FOR="198.51.100.8")

    assert response.status_code == 302


def test_a_successful_login_forgets_earlier_failures(admin_user):
    fail(4, "ada", "10.0.0.1")
    assert attempt("ada", "pw-ada", "10.0.0.1").status_code == 302

    fail(4, "ada", "10.0.0.1")

    assert attempt("ada", "pw-ada", "10.0.0.1").status_code == 302


def test_the_lockout_ends_after_the_cool_off(admin_user):
    fail(4, "ada", "10.0.0.1")
    assert_locked(attempt("ada", "wrong", "10.0.0.1"))

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert attempt("ada", "pw-ada", "10.0.0.1").status_code == 302


@pytest.mark.parametrize("username", ["ada\x00", "x" * 1000])
def test_odd_usernames_are_a_failed_login_not_a_500(admin_user, username):
    response = attempt(username, "wrong", "10.0.0.1")

    assert response.status_code == 200
