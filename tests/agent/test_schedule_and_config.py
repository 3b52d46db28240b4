"""The agent's drift-free schedule and its configuration."""

import pytest
from homepot_agent.agent import Schedule
from homepot_agent.config import ConfigError, config_from_mapping, load_config, save_config


def test_a_schedule_keeps_its_rhythm_when_a_run_is_late():
    schedule = Schedule(interval=10, due=100)

    schedule.advance(now=103.5)  # ran 3.5 s late
    assert schedule.due == 110
    schedule.advance(now=131)  # missed two slots entirely
    assert schedule.due == 140


def test_backoff_grows_with_jitter_and_is_capped_at_a_minute():
    schedule = Schedule(interval=10, due=0)
    delays = []
    for _ in range(12):
        schedule.back_off(now=0, cap=60, jitter=lambda: 1.0)
        delays.append(schedule.due)

    assert delays[:4] == [10, 20, 40, 60]
    assert max(delays) == 60  # never longer than the cap, however long the outage
    schedule.back_off(now=0, cap=60, jitter=lambda: 0.0)
    assert schedule.due == 30  # jitter spreads a fleet over the second half of the wait
    schedule.advance(now=0)
    assert schedule.failures == 0


def test_backoff_never_retries_faster_than_the_schedule_itself():
    schedule = Schedule(interval=300, due=0)

    schedule.back_off(now=0, cap=60, jitter=lambda: 1.0)

    assert schedule.due == 300


def test_retry_after_is_waited_for_but_never_beyond_the_cap():
    schedule = Schedule(interval=10, due=0)

    schedule.back_off(now=100, cap=60, retry_after=45, jitter=lambda: 0.0)
    assert schedule.due == 145
    schedule.back_off(now=100, cap=60, retry_after=7200, jitter=lambda: 0.0)
    assert schedule.due == 160


def test_config_file_and_environment(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('server_url = "https://fleet.example"\ncollect_interval = 5\n')

    config = load_config(path, environ={"HOMEPOT_AGENT_PUSH_INTERVAL": "60"})

    assert (config.server_url, config.collect_interval, config.push_interval) == (
        "https://fleet.example",
        5.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"collect_interval": 0}, "collect_interval"),
        ({"collect_interval": "often"}, "collect_interval"),
        ({"enabled_collectors": ["gpu"]}, "enabled_collectors"),
        ({"allowed_commands": ["format_disk"]}, "allowed_commands"),
        ({"server_url": "ftp://x"}, "server_url"),
        ({"colour": "blue"}, "colour"),
        ({"verify_tls": "perhaps"}, "verify_tls"),
        ({"max_backoff": 0}, "max_backoff"),
        ({"max_backoff": "nan"}, "max_backoff"),
        ({"allow_insecure_http": "maybe"}, "allow_insecure_http"),
    ],
)
def test_bad_config_names_the_key(values, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        config_from_mapping(values)


def test_a_broken_file_is_named(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("server_url = ")

    with pytest.raises(ConfigError, match="agent.toml"):
        load_config(path, environ={})


def test_saved_config_loads_back(tmp_path):
    config = config_from_mapping(
        {"server_url": "http://x", "allow_insecure_http": True, "allowed_services": ["nginx"]}
    )
    save_config(config, tmp_path / "a.toml")

    assert load_config(tmp_path / "a.toml", environ={}) == config
