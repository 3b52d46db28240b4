"""Settings are read once from the environment and fail loudly on bad values."""

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


def load_settings(setting: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
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
