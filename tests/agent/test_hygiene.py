"""Agent hygiene: bounded memory, plain http only where it is safe, a private
state directory whatever the umask."""

import os
import stat
from dataclasses import replace

import pytest
from homepot_agent import cli
from homepot_agent.config import AgentConfig, ConfigError, config_from_mapping
from homepot_agent.runtime import build_agent

from tests.agent.helpers import Clock


def offline_agent(tmp_path, **settings):
    """An agent whose server never answers (nothing listens on port 1)."""
    config = replace(
        AgentConfig(),
        server_url="http://127.0.0.1:1",
        device_id="pi-offline",
        state_dir=tmp_path / "state",
        enabled_collectors=["agent"],
        **settings,
    )
    return build_agent(config, api_key="hpk_x_y", clock=Clock())


def test_the_memory_buffer_is_capped_within_the_spool_limit(tmp_path):
    agent = offline_agent(tmp_path, spool_max_samples=5, push_interval=10_000)

    for _ in range(23):
        agent.collect_once()

    assert len(agent.buffer) <= 5
    assert agent.spool.depth() <= 5
    held = len(agent.buffer) + agent.spool.depth()
    assert held + agent.spool.dropped() == 23  # what no longer fits is counted, oldest first


@pytest.mark.parametrize(
    "url", ["http://fleet.example.com", "http://10.0.0.5:8000", "http://127.example.com"]
)
def test_plain_http_to_another_host_is_a_configuration_error_naming_the_key(url):
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        config_from_mapping({"server_url": url})

    assert config_from_mapping({"server_url": url, "allow_insecure_http": True}).server_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.1.2.3",
        "http://localhost:8000",
        "http://[::1]:8000",
        "https://fleet.example.com",
    ],
)
def test_https_and_loopback_http_need_no_exception(url):
    assert config_from_mapping({"server_url": url}).server_url == url


def test_run_and_register_refuse_plain_http_to_another_host(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text('server_url = "http://fleet.example.com"\ndevice_id = "pi"\n')

    assert cli.main(["--config", str(path), "run"]) == cli.EXIT_CONFIG
    assert "allow_insecure_http" in capsys.readouterr().err
    register = [
        *("--config", str(tmp_path / "new.toml"), "register"),
        *("--server", "http://fleet.example.com", "--site", "s", "--token", "t"),
        *("--state-dir", str(tmp_path / "state2")),
    ]
    assert cli.main(register) == cli.EXIT_CONFIG
    assert "allow_insecure_http" in capsys.readouterr().err


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(directory):
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.is_file()}


def test_the_state_directory_is_private_whatever_the_umask(tmp_path, umask):
    agent = offline_agent(tmp_path, spool_max_samples=10)
    state = tmp_path / "state"
    agent.collect_once()
    agent.push_once()  # fails: the samples go to the spool
    agent.spool.quarantine(agent.spool.oldest_batch(10).batch_id, "test")
    agent.ledger.claim("c-1")
    agent.write_status(state / "status.json")
    cli.write_key(state / "api_key", "hpk_x_y")

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = modes(state)
    assert {"spool.sqlite3", "commands.sqlite3", "status.json", "api_key"} <= set(files)
    assert any(name.endswith("-wal") for name in files)
    assert set(files.values()) == {0o600}, files


def test_an_existing_state_directory_is_made_private(tmp_path, umask):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "status.json").write_text("{}")
    os.chmod(state / "status.json", 0o644)

    offline_agent(tmp_path)

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert set(modes(state).values()) == {0o600}


def test_a_shared_directory_is_never_taken_over_as_the_state_directory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    config = replace(AgentConfig(), server_url="http://127.0.0.1:1", state_dir=shared)

    with pytest.raises(ConfigError, match="^state_dir"):
        build_agent(config, api_key="hpk_x_y", clock=Clock())

    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
