"""Settings are read once from the environment and fail loudly on bad values."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from homepot.env import env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parent.parent
PRINT_SETTING = (
    "import django; django.setup(); from django.conf import settings; print(settings.{})"
)
# Deployment variables a developer's shell may carry; each test sets what it needs.
DEPLOYMENT_VARIABLES = {"DEBUG", "SECRET_KEY", "NUM_PROXIES", "HTTPS", "TRUST_PROXY_SSL_HEADER"}


def load_settings(setting: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in DEPLOYMENT_VARIABLES and not k.startswith("SECURE_")
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTING.format(setting)],
        env={**clean, "DJANGO_SETTINGS_MODULE": "homepot.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = load_settings("DEBUG", DEBUG="false")

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_defaults_debug_off_and_bcrypt_cost_12():
    result = load_settings("DEVICE_KEY_BCRYPT_ROUNDS", SECRET_KEY="s" * 50)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "12"


def test_production_refuses_a_cheap_bcrypt_cost():
    result = load_settings("DEBUG", SECRET_KEY="s" * 50, DEVICE_KEY_BCRYPT_ROUNDS="4")

    assert result.returncode != 0
    assert "DEVICE_KEY_BCRYPT_ROUNDS" in result.stderr


def test_a_bad_value_names_the_variable():
    result = load_settings("DEBUG", DEBUG="true", OFFLINE_SWEEP_SECONDS="often")

    assert result.returncode != 0
    assert "OFFLINE_SWEEP_SECONDS='often' is not an integer" in result.stderr


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    monkeypatch.setenv("COUNT", "-1")
    monkeypatch.setenv("HOSTS", "a.example, b.example,")

    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        env_bool("FLAG", False)
    with pytest.raises(ImproperlyConfigured, match="COUNT=-1 must be at least 0"):
        env_int("COUNT", 5, minimum=0)
    assert env_list("HOSTS", []) == ["a.example", "b.example"]
    assert env_int("UNSET_COUNT", 5) == 5


# --- proxy, HTTPS and secure cookies: what the deployment says, never what a client claims ---

PROBE_REQUEST = """
import json, django
django.setup()
from django.test import Client
response = Client().get({path!r}, HTTP_HOST="localhost", HTTP_X_FORWARDED_PROTO={proto!r})
print(json.dumps({{"status": response.status_code, "headers": dict(response.headers)}}))
"""


def production_request(path: str, proto: str, **env: str) -> dict:
    """One request through the real middleware, with settings built from `env` alone."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in DEPLOYMENT_VARIABLES and not k.startswith("SECURE_")
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE_REQUEST.format(path=path, proto=proto)],
        env={**clean, "DJANGO_SETTINGS_MODULE": "homepot.settings", "SECRET_KEY": "s" * 50, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_client_alone_cannot_claim_https_without_a_proxy():
    # Without a proxy in front, X-Forwarded-Proto comes from the client itself:
    # the request stays plain http, so no HSTS is sent on its word.
    response = production_request("/health", "https", SECURE_HSTS_SECONDS="3600")

    assert response["status"] == 200
    assert "Strict-Transport-Security" not in response["headers"]


def test_behind_a_proxy_the_forwarded_proto_is_trusted():
    response = production_request("/health", "https", SECURE_HSTS_SECONDS="3600", NUM_PROXIES="1")

    assert response["headers"]["Strict-Transport-Security"] == "max-age=3600"


def test_the_proxy_header_can_be_switched_off_explicitly():
    response = production_request(
        "/health",
        "https",
        SECURE_HSTS_SECONDS="3600",
        NUM_PROXIES="1",
        TRUST_PROXY_SSL_HEADER="false",
    )

    assert "Strict-Transport-Security" not in response["headers"]


def test_https_deployments_redirect_plain_http_but_not_the_health_probes():
    https = {"HTTPS": "true", "NUM_PROXIES": "1"}

    login = production_request("/admin/login/", "http", **https)
    probe = production_request("/health", "http", **https)

    assert login["status"] == 301
    assert login["headers"]["Location"] == "https://localhost/admin/login/"
    # the container healthcheck calls http://127.0.0.1:8000/health directly
    assert probe["status"] == 200


def test_https_deployments_send_a_years_hsts():
    response = production_request("/health", "https", HTTPS="true", NUM_PROXIES="1")

    assert response["status"] == 200
    assert response["headers"]["Strict-Transport-Security"] == "max-age=31536000"


def test_https_makes_cookies_secure_even_in_development():
    cookies = "SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE"

    plain = load_settings(cookies, DEBUG="true")
    https = load_settings(cookies, DEBUG="true", HTTPS="true", NUM_PROXIES="1")

    assert plain.stdout.strip() == "False False", plain.stderr
    assert https.stdout.strip() == "True True", https.stderr


def test_hsts_include_subdomains_is_opt_in():
    response = production_request(
        "/health", "https", HTTPS="true", NUM_PROXIES="1", SECURE_HSTS_INCLUDE_SUBDOMAINS="true"
    )

    assert response["headers"]["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains"
    )


def test_production_defaults_are_plain_http_with_secure_cookies_and_no_trusted_proxy():
    result = load_settings(
        "SECURE_PROXY_SSL_HEADER, settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, "
        "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE",
        SECRET_KEY="s" * 50,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None False 0 True True"


def test_https_without_a_trusted_proxy_header_is_refused():
    # gunicorn in the image speaks plain http: every request would look insecure
    # and be redirected forever.
    result = load_settings("DEBUG", SECRET_KEY="s" * 50, HTTPS="true")

    assert result.returncode != 0
    assert "HTTPS=true" in result.stderr and "TRUST_PROXY_SSL_HEADER" in result.stderr
