"""The lab collector framework: enabled by name, own table, own interval, isolated."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from homepot_agent.config import ConfigError, config_from_mapping, load_config, save_config
from homepot_agent.lab import LabScheduler

from .helpers import Clock


class FakeSource:
    def __init__(self, name: str, value: float = 1.0) -> None:
        self.name = name
        self.value = value
        self.broken = False
        self.opens = 0
        self.reads = 0

    def open(self) -> None:
        if self.broken:
            raise OSError("no such device")
        self.opens += 1

    def read(self) -> dict[str, float]:
        if self.broken:
            raise OSError("remote I/O error")
        self.reads += 1
        return {f"{self.name}.value": self.value}

    def close(self) -> None:
        pass


def test_each_lab_collector_runs_on_its_own_interval():
    clock = Clock()
    fast, slow = FakeSource("fast"), FakeSource("slow")
    scheduler = LabScheduler([(fast, 1.0), (slow, 5.0)], clock)

    for _ in range(10):
        scheduler.collect_due(clock())
        clock.now += 1.0

    assert (fast.reads, slow.reads) == (10, 2)
    assert scheduler.next_due() == clock.now


def test_a_failing_instrument_reports_up_0_and_never_stops_the_others(caplog):
    clock = Clock()
    bad, good = FakeSource("bad"), FakeSource("good", 7.0)
    bad.broken = True
    scheduler = LabScheduler([(bad, 1.0), (good, 1.0)], clock)

    with caplog.at_level(logging.WARNING, logger="homepot_agent.lab"):
        samples = []
        for _ in range(3):
            samples.append(scheduler.collect_due(clock()))
            clock.now += 1.0
        bad.broken = False
        samples.append(scheduler.collect_due(clock()))

    assert samples[0] == {"bad.up": 0.0, "good.value": 7.0, "good.up": 1.0}
    assert samples[3] == {"bad.value": 1.0, "bad.up": 1.0, "good.value": 7.0, "good.up": 1.0}
    # logged once when it went down and once when it came back, not every sample
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bad:")]
    assert messages == ["bad: not available (OSError: no such device)", "bad: reading again"]


def test_a_missing_driver_library_is_one_more_down_collector():
    class NeedsLibrary(FakeSource):
        def open(self) -> None:
            import homepot_no_such_driver  # noqa: F401

    clock = Clock()
    scheduler = LabScheduler([(NeedsLibrary("x"), 1.0), (FakeSource("y"), 1.0)], clock)

    assert scheduler.collect_due(clock()) == {"x.up": 0.0, "y.value": 1.0, "y.up": 1.0}


def test_tables_are_validated_and_name_the_key():
    with pytest.raises(ConfigError, match=r"bme680\.address"):
        config_from_mapping({"bme680": {"address": 0x20}})
    with pytest.raises(ConfigError, match=r"mlx90640\.interval"):
        config_from_mapping({"mlx90640": {"interval": 0}})
    with pytest.raises(ConfigError, match=r"mcp3424\.frequency: unknown setting"):
        config_from_mapping({"mcp3424": {"frequency": 1}})
    with pytest.raises(ConfigError, match="enabled_collectors: unknown collector 'geiger'"):
        config_from_mapping({"enabled_collectors": ["system", "geiger"]})


def test_tables_survive_a_save_and_load(tmp_path: Path):
    path = tmp_path / "agent.toml"
    path.write_text(
        'enabled_collectors = ["system", "bme680", "mcp3424"]\n'
        "[bme680]\naddress = 0x76\ninterval = 30\n"
        "[mcp3424]\naddress = 0x68\n"
        'channels = [{channel = 1, name = "supply_voltage", scale = 11.0}]\n'
    )
    config = load_config(path, environ={})

    save_config(config, tmp_path / "again.toml")

    assert load_config(tmp_path / "again.toml", environ={}) == config
    assert config.tables["bme680"] == {"address": 0x76, "interval": 30}


def test_the_base_agent_imports_no_instrument_library(tmp_path: Path):
    script = (
        "import sys\n"
        "from homepot_agent import cli, runtime, agent, collectors, config, lab\n"
        "from homepot_agent.config import config_from_mapping\n"
        "config_from_mapping({'bme680': {}, 'mlx90640': {}, 'mcp3424': {'channels': []}})\n"
        "cli.main(['--config', sys.argv[1], 'collect', '--once'])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in\n"
        "    ('adafruit_bme680', 'adafruit_mlx90640', 'adafruit_bus_device', 'board', 'busio',\n"
        "     'serial', 'smbus2', 'micropython')]\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "LOADED []" in result.stdout


def test_the_readme_lab_example_is_a_valid_config(tmp_path: Path):
    readme = (Path(__file__).parents[2] / "agent_client" / "README.md").read_text()
    section = readme.split("### A complete example", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agent.toml"
    path.write_text(example)

    config = load_config(path, environ={})

    assert set(config.tables) == {"bme680", "mlx90640", "mcp3424", "psu"}
    assert {"bme680", "mlx90640", "mcp3424", "psu"} <= set(config.enabled_collectors)


def test_real_sources_without_a_bus_report_up_0(caplog):
    from homepot_agent.lab import LabContext, build_scheduler

    clock = Clock()
    tables = {
        "bme680": {"i2c_bus": 250},  # /dev/i2c-250 does not exist
        "mlx90640": {"i2c_bus": 250},
        "mcp3424": {"i2c_bus": 250, "channels": [{"channel": 1, "name": "v"}]},
    }
    scheduler = build_scheduler(
        ["system", "bme680", "mlx90640", "mcp3424"], tables, LabContext(clock=clock)
    )

    with caplog.at_level(logging.WARNING, logger="homepot_agent.lab"):
        first = scheduler.collect_due(clock())
        clock.now += 60
        second = scheduler.collect_due(clock())

    down = {"bme680.up": 0.0, "mlx90640.up": 0.0, "mcp3424.up": 0.0}
    assert first == second == down
    assert len(caplog.records) == 3  # one line per instrument, not one per reading
    assert all("i2c-250" in r.getMessage() for r in caplog.records)


def test_update_config_turns_a_lab_collector_on_and_off(tmp_path: Path):
    from types import SimpleNamespace

    from homepot_agent.runtime import build_agent

    from .test_mlx90640 import FakeCamera, a_frame

    sent: list = []
    client = SimpleNamespace(thermal_frame=sent.append)
    config = config_from_mapping(
        {"state_dir": str(tmp_path / "state"), "mlx90640": {"interval": 5}}
    )
    clock, camera = Clock(), FakeCamera(a_frame())
    agent = build_agent(
        config, api_key="k", client=client, clock=clock, lab_buses={"mlx90640": camera}
    )
    assert agent.lab is None  # the table alone does not enable it

    def update(collectors: list[str]) -> str:
        command = {"command_type": "update_config", "payload": {"enabled_collectors": collectors}}
        assert agent.executor.check(command) is None
        return agent.executor.execute(command).status

    assert update(["system", "mlx90640"]) == "succeeded"
    agent.collect_lab(clock())
    assert camera.frames == 1 and len(sent) == 1
    assert agent.buffer[-1][1]["thermal.max"] == 35.5

    assert update(["system"]) == "succeeded"
    assert agent.lab is None
