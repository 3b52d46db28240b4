import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from homepot_agent import cli
from homepot_agent.config import load_config, save_config

from devices import services

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "{log}"
case "$*" in
  "restart -- slow")
    echo started >> "{log}.slow"; sleep {slow_seconds}; echo ended >> "{log}.slow" ;;
  is-active*)
    shift; [ "$1" = "--" ] && shift
    for unit in "$@"; do echo active; done ;;
esac
exit 0
"""
SLOW_SECONDS = 3


@pytest.fixture
def register(tmp_path, live_server, site, operator) -> Callable[[str], Path]:
    """Enroll a device with the real CLI against the live server; its config path."""

    def enroll(device_id: str) -> Path:
        token = services.enrollment_token_create(actor=operator, site=site).token
        config_path = tmp_path / "agent.toml"
        argv = [
            *("--config", str(config_path), "register", "--server", live_server.url),
            *("--site", site.public_id, "--token", token, "--device-id", device_id),
            *("--state-dir", str(tmp_path / "state")),
        ]
        assert cli.main(argv) == cli.EXIT_OK
        return config_path

    return enroll


@pytest.fixture
def registered(register) -> Path:
    """The device pi-e2e, enrolled, allowed to act on the services nginx and slow."""
    config_path = register("pi-e2e")
    config = load_config(config_path, environ={})
    save_config(replace(config, allowed_services=["nginx", "slow"]), config_path)
    return config_path


@pytest.fixture
def systemctl_log(tmp_path, monkeypatch) -> Path:
    """A test double for systemctl, first on PATH (containers have no systemd).
    Every call is a line in the log; a unit named "slow" takes SLOW_SECONDS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(log=log, slow_seconds=SLOW_SECONDS))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log
