"""The files a Pi install uses agree with the agent they install."""

import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from homepot_agent import cli, lab
from homepot_agent.config import AgentConfig, load_config

SYSTEMD = Path(__file__).resolve().parents[2] / "agent_client" / "systemd"


def unit_option(name: str) -> str:
    for line in (SYSTEMD / "homepot-agent.service").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in the unit")


def test_the_unit_runs_the_agent_daemon_as_its_own_user():
    program, *arguments = shlex.split(unit_option("ExecStart"))

    assert program.endswith("/bin/homepot-agent")
    assert cli._parser().parse_args(arguments).command == "run"
    assert unit_option("User") == "homepot-agent"
    assert unit_option("Restart") == "on-failure"
    # a configuration error (exit 2) is not fixed by restarting
    assert unit_option("RestartPreventExitStatus") == str(cli.EXIT_CONFIG)


def test_the_example_config_is_valid_and_complete(tmp_path):
    config = load_config(SYSTEMD / "agent.toml.example", environ={})
    text = (SYSTEMD / "agent.toml.example").read_text()

    assert config.allowed_services  # the example shows how to allow a service
    for setting in fields(AgentConfig):  # every setting is shown with its default
        if setting.name == "tables":  # the lab collectors' tables: shown commented out
            for name in lab.REGISTRY:
                assert f"\n# [{name}]\n" in text, name
            continue
        assert f"\n{setting.name} = " in text, setting.name
        if setting.name != "allowed_services":
            assert getattr(config, setting.name) == getattr(AgentConfig(), setting.name)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_polkit_rule_is_valid_javascript(tmp_path):
    copy = tmp_path / "rule.js"
    copy.write_text((SYSTEMD / "50-homepot-agent.rules").read_text())

    checked = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True)

    assert checked.returncode == 0, checked.stderr
