from collections.abc import Callable
from pathlib import Path

import pytest
from homepot_agent import cli

from devices import services


@pytest.fixture
def register(tmp_path, live_server, site, operator) -> Callable[[str], Path]:
    """Enroll a device with the real CLI against the live server; its config path."""

    def enroll(device_id: str) -> Path:
        token = services.enrollment_token_create(actor=operator, site=site).token
        config_path = tmp_path / "agent.toml"
        argv = [
            *("--config", str(config_path), "register", "--server", live_server.url),
            *("--site", site.site_id, "--token", token, "--device-id", device_id),
            *("--state-dir", str(tmp_path / "state")),
        ]
        assert cli.main(argv) == cli.EXIT_OK
        return config_path

    return enroll
