"""homepot-agent status and collect --once, against a live server."""

import json

import pytest
from homepot_agent import cli

from devices import services
from devices.models import Device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def config_path(register):
    return register("pi-cli")


def test_status_reports_identity_and_an_accepted_key(config_path, capsys):
    capsys.readouterr()

    assert cli.main(["--config", str(config_path), "status"]) == cli.EXIT_OK

    report = json.loads(capsys.readouterr().out)
    assert (report["device_id"], report["server_reachable"], report["key"]) == (
        "pi-cli",
        True,
        "accepted",
    )


def test_status_says_clearly_when_the_key_was_revoked(config_path, capsys, operator):
    services.device_keys_revoke(device=Device.objects.get(public_id="pi-cli"), actor=operator)
    capsys.readouterr()

    assert cli.main(["--config", str(config_path), "status"]) == cli.EXIT_REFUSED

    assert json.loads(capsys.readouterr().out)["key"].startswith("refused")


def test_collect_once_prints_one_sample(tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "none.toml"), "collect", "--once"]) == cli.EXIT_OK

    sample = json.loads(capsys.readouterr().out)
    assert {"cpu_percent", "memory_percent", "disk_percent", "uptime_seconds"} <= set(sample)


def test_bad_config_exits_naming_the_key(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text("collect_interval = -1\n")

    assert cli.main(["--config", str(path), "collect", "--once"]) == cli.EXIT_CONFIG
    assert "collect_interval" in capsys.readouterr().err
