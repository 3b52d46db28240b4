"""The agent's collectors, fed fake psutil modules, clocks and systemctl runners."""

from __future__ import annotations

import logging
import math
import stat
import subprocess
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from homepot_agent.collectors import (
    METRIC_NAME_RE,
    AgentHealthCollector,
    ServicesCollector,
    SystemCollector,
    boot_id,
    build_collectors,
    collect_all,
    metric_name,
    mount_label,
)
from homepot_agent.config import AgentConfig

VMem = namedtuple("VMem", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")
Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes read_time write_time")
NetIO = namedtuple(
    "NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout"
)
Temp = namedtuple("Temp", "label current high critical")
MemInfo = namedtuple("MemInfo", "rss vms")
CpuTimes = namedtuple("CpuTimes", "user system children_user children_system")


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def net(rx: int, tx: int, errin: int = 0, errout: int = 0, dropin: int = 0, dropout: int = 0):
    return NetIO(tx, rx, 0, 0, errin, errout, dropin, dropout)


def fake_psutil(**overrides: Any) -> SimpleNamespace:
    """A psutil stand-in with fixed readings; ``overrides`` replaces single functions."""
    usage = {
        "/": Usage(100_000, 25_000, 75_000, 25.0),
        "/boot/firmware": Usage(500, 100, 400, 20.0),
    }

    def disk_usage(path: str) -> Usage:
        return usage[path]

    def cpu_percent(interval: float | None = None, percpu: bool = False):
        assert interval is None  # never blocks the agent loop
        return [10.0, 30.0] if percpu else 20.0

    functions: dict[str, Any] = {
        "cpu_percent": cpu_percent,
        "getloadavg": lambda: (0.5, 0.25, 0.125),
        "virtual_memory": lambda: VMem(1000, 400, 60.0, 600, 400),
        "swap_memory": lambda: Swap(200, 20, 180, 10.0, 0, 0),
        "disk_partitions": lambda all=False: [
            Part("/dev/mmcblk0p2", "/", "ext4", "rw"),
            Part("/dev/mmcblk0p1", "/boot/firmware", "vfat", "rw"),
        ],
        "disk_usage": disk_usage,
        "disk_io_counters": lambda perdisk=False: DiskIO(0, 0, 5_000, 8_000, 0, 0),
        "net_io_counters": lambda pernic=False: {
            "lo": net(10**9, 10**9),
            "eth0": net(1000, 500, errin=1),
        },
        "sensors_temperatures": lambda: {"cpu_thermal": [Temp("", 48.5, None, None)]},
        "boot_time": lambda: 1_000.0,
        "pids": lambda: [1, 2, 3, 4],
    }
    functions.update(overrides)
    return SimpleNamespace(**functions)


def system_collector(ps: SimpleNamespace, clock: FakeClock | None = None) -> SystemCollector:
    return SystemCollector(
        psutil_module=ps,
        clock=clock or FakeClock(),
        boot_id_path=Path("/nonexistent/boot_id"),
        wall_clock=lambda: 4_600.0,
    )


# --- metric names ----------------------------------------------------------------------


def test_metric_name_joins_parts_and_replaces_disallowed_characters() -> None:
    assert metric_name("service", "getty@tty1", "active") == "service.getty_tty1.active"
    assert metric_name("temperature", "coretemp", "Package id 0") == (
        "temperature.coretemp.Package_id_0"
    )


def test_metric_name_always_matches_the_server_pattern() -> None:
    for parts in [("9lives",), ("",), ("ünïcode", "x"), ("a" * 300,), ("-x", "y")]:
        assert METRIC_NAME_RE.match(metric_name(*parts)), parts
    assert len(metric_name("a" * 300)) == 100


def test_mount_points_become_one_name_part() -> None:
    assert mount_label("/") == "root"
    assert mount_label("/boot/firmware") == "boot_firmware"
    assert mount_label("/mnt/usb stick") == "mnt_usb_stick"


# --- system ------------------------------------------------------------------------------


def test_system_first_collect_reports_absolute_values_and_no_rates() -> None:
    metrics = system_collector(fake_psutil()).collect()

    assert metrics == {
        "cpu_percent": 20.0,
        "cpu.core0.percent": 10.0,
        "cpu.core1.percent": 30.0,
        "load.1m": 0.5,
        "load.5m": 0.25,
        "load.15m": 0.125,
        "memory_percent": 60.0,
        "memory.used_bytes": 600.0,
        "memory.available_bytes": 400.0,
        "swap.percent": 10.0,
        "swap.used_bytes": 20.0,
        "disk_percent": 25.0,
        "disk.root.percent": 25.0,
        "disk.root.used_bytes": 25_000.0,
        "disk.boot_firmware.percent": 20.0,
        "disk.boot_firmware.used_bytes": 100.0,
        "temperature.cpu_thermal.0": 48.5,
        "uptime_seconds": 3_600.0,
        "process_count": 4.0,
    }
    assert not any(name.endswith("_per_s") for name in metrics)


def test_system_rates_are_counter_differences_over_the_clock_delta() -> None:
    readings = iter(
        [
            {"lo": net(0, 0), "eth0": net(1000, 500, errin=1)},
            {"lo": net(9999, 9999), "eth0": net(3000, 1500, errin=2, dropin=1, dropout=2)},
        ]
    )
    disks = iter([DiskIO(0, 0, 5_000, 8_000, 0, 0), DiskIO(0, 0, 9_000, 8_000, 0, 0)])
    clock = FakeClock(100.0)
    collector = system_collector(
        fake_psutil(
            net_io_counters=lambda pernic=False: next(readings),
            disk_io_counters=lambda perdisk=False: next(disks),
        ),
        clock,
    )

    collector.collect()
    clock.now = 102.0
    metrics = collector.collect()

    assert metrics["net.eth0.rx_bytes_per_s"] == 1000.0
    assert metrics["net.eth0.tx_bytes_per_s"] == 500.0
    assert metrics["net.eth0.errors_per_s"] == 2.0  # ((2+0+1+2) - (1+0+0+0)) / 2 s
    assert metrics["disk.read_bytes_per_s"] == 2000.0
    assert metrics["disk.write_bytes_per_s"] == 0.0
    assert not any(name.startswith("net.lo.") for name in metrics)


def test_system_counter_that_went_backwards_gives_no_rate() -> None:
    readings = iter([{"eth0": net(5000, 5000)}, {"eth0": net(100, 6000)}])
    clock = FakeClock()
    collector = system_collector(
        fake_psutil(net_io_counters=lambda pernic=False: next(readings)), clock
    )

    collector.collect()
    clock.now += 1.0
    metrics = collector.collect()

    assert "net.eth0.rx_bytes_per_s" not in metrics  # interface reset
    assert metrics["net.eth0.tx_bytes_per_s"] == 1000.0


def test_system_without_sensors_temperatures_reports_no_temperatures() -> None:
    ps = fake_psutil()
    del ps.sensors_temperatures  # macOS / Windows psutil has no such function

    metrics = system_collector(ps).collect()

    assert not any(name.startswith("temperature.") for name in metrics)
    assert metrics["cpu_percent"] == 20.0


def test_system_with_empty_sensors_reports_no_temperatures() -> None:
    metrics = system_collector(fake_psutil(sensors_temperatures=lambda: {})).collect()

    assert not any(name.startswith("temperature.") for name in metrics)


def test_system_temperature_uses_label_when_present() -> None:
    temps = {"coretemp": [Temp("Package id 0", 55.0, 80.0, 100.0), Temp("Core 0", 50.0, 0, 0)]}

    metrics = system_collector(fake_psutil(sensors_temperatures=lambda: temps)).collect()

    assert metrics["temperature.coretemp.Package_id_0"] == 55.0
    assert metrics["temperature.coretemp.Core_0"] == 50.0


def test_system_skips_a_mount_it_may_not_read() -> None:
    def disk_usage(path: str) -> Usage:
        if path == "/boot/firmware":
            raise PermissionError(13, "Permission denied")
        return Usage(100, 50, 50, 50.0)

    metrics = system_collector(fake_psutil(disk_usage=disk_usage)).collect()

    assert metrics["disk_percent"] == 50.0
    assert not any(name.startswith("disk.boot_firmware.") for name in metrics)


def test_system_reports_root_usage_even_when_root_is_not_a_listed_partition() -> None:
    ps = fake_psutil(
        disk_partitions=lambda all=False: [Part("/dev/sda1", "/boot/firmware", "vfat", "rw")]
    )

    metrics = system_collector(ps).collect()

    assert metrics["disk_percent"] == 25.0
    assert metrics["disk.boot_firmware.percent"] == 20.0


def test_system_one_failing_reading_does_not_lose_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_load() -> tuple[float, float, float]:
        raise OSError("getloadavg unavailable")

    with caplog.at_level(logging.WARNING, logger="homepot_agent.collectors"):
        metrics = system_collector(fake_psutil(getloadavg=no_load)).collect()

    assert "load.1m" not in metrics
    assert metrics["memory_percent"] == 60.0
    assert "load" in caplog.text


def test_system_boot_id_is_read_from_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "boot_id"
    path.write_text("0f1e2d3c-aaaa-bbbb-cccc-123456789abc\n")

    collector = SystemCollector(psutil_module=fake_psutil(), boot_id_path=path)

    assert collector.boot_id == "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"


def test_boot_id_is_empty_when_unreadable(tmp_path: Path) -> None:
    assert boot_id(tmp_path / "missing") == ""


def test_system_collector_with_real_psutil_returns_valid_finite_metrics() -> None:
    collector = SystemCollector()

    collector.collect()
    metrics = collector.collect()

    for name, value in metrics.items():
        assert METRIC_NAME_RE.match(name), name
        assert isinstance(value, float) and math.isfinite(value), (name, value)
    for name in ("cpu_percent", "memory_percent", "disk_percent", "uptime_seconds"):
        assert name in metrics
    assert metrics["process_count"] >= 1


# --- services ----------------------------------------------------------------------------


def test_services_runs_systemctl_once_without_a_shell_and_parses_each_state() -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 3, stdout="active\ninactive\nfailed\n", stderr="")

    collector = ServicesCollector(["nginx.service", "getty@tty1", "homepot-kiosk"], run=run)

    metrics = collector.collect()

    assert len(calls) == 1
    argv, kwargs = calls[0]
    assert argv == [
        "systemctl",
        "is-active",
        "--",
        "nginx.service",
        "getty@tty1",
        "homepot-kiosk",
    ]
    assert not kwargs.get("shell", False)
    assert kwargs["timeout"] == 10
    assert kwargs["capture_output"] is True
    assert kwargs["text"] is True
    assert metrics == {
        "service.nginx.service.active": 1.0,
        "service.getty_tty1.active": 0.0,
        "service.homepot-kiosk.active": 0.0,
        "services.active": 1.0,
        "services.failed": 1.0,
    }


def test_services_without_systemctl_returns_nothing_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    collector = ServicesCollector(["nginx"], run=run)

    with caplog.at_level(logging.WARNING, logger="homepot_agent.collectors"):
        assert collector.collect() == {}
        assert collector.collect() == {}

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_services_timeout_returns_nothing() -> None:
    def run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    assert ServicesCollector(["nginx"], run=run).collect() == {}


def test_services_output_not_matching_the_service_list_is_not_misattributed() -> None:
    def run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(argv, 1, stdout="active\n", stderr="bus error")

    assert ServicesCollector(["a", "b"], run=run).collect() == {}


def test_services_with_a_real_fake_systemctl_script(tmp_path: Path) -> None:
    script = tmp_path / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = is-active ] && [ "$2" = -- ] || exit 64\n'
        "shift 2\n"
        'for unit in "$@"; do\n'
        '  case "$unit" in\n'
        "    ssh) echo active ;;\n"
        "    cups) echo failed ;;\n"
        "    *) echo inactive ;;\n"
        "  esac\n"
        "done\n"
        "exit 3\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    metrics = ServicesCollector(
        ["ssh", "cups", "bluetooth"], run=subprocess.run, systemctl=str(script)
    ).collect()

    assert metrics == {
        "service.ssh.active": 1.0,
        "service.cups.active": 0.0,
        "service.bluetooth.active": 0.0,
        "services.active": 1.0,
        "services.failed": 1.0,
    }


def test_services_real_run_of_a_missing_systemctl_returns_nothing(tmp_path: Path) -> None:
    collector = ServicesCollector(["ssh"], systemctl=str(tmp_path / "no-systemctl"))

    assert collector.collect() == {}


# --- agent health ------------------------------------------------------------------------


def test_agent_health_reports_spool_memory_cpu_and_time_since_push() -> None:
    process = SimpleNamespace(
        memory_info=lambda: MemInfo(rss=50_000_000, vms=0),
        cpu_times=lambda: CpuTimes(user=1.5, system=0.25, children_user=0, children_system=0),
    )
    collector = AgentHealthCollector(
        spool_depth=lambda: 42,
        last_push=lambda: 1_000.0,
        wall_clock=lambda: 1_030.0,
        process=process,
    )

    assert collector.collect() == {
        "agent.spool_depth": 42.0,
        "agent.rss_bytes": 50_000_000.0,
        "agent.cpu_seconds": 1.75,
        "agent.seconds_since_push": 30.0,
    }


def test_agent_health_omits_time_since_push_before_the_first_push() -> None:
    metrics = AgentHealthCollector(spool_depth=lambda: 0, last_push=lambda: None).collect()

    assert "agent.seconds_since_push" not in metrics
    assert metrics["agent.rss_bytes"] > 0  # the real process of this test run
    assert metrics["agent.spool_depth"] == 0.0


# --- building and merging ----------------------------------------------------------------


def test_build_collectors_follows_the_config() -> None:
    config = AgentConfig(allowed_services=["nginx"])

    built = build_collectors(config, spool_depth=lambda: 0, last_push=lambda: None)

    assert [c.name for c in built] == ["system", "services", "agent"]
    assert built[1].services == ["nginx"]


def test_build_collectors_skips_services_when_none_are_allowed() -> None:
    config = AgentConfig(enabled_collectors=["services", "agent"], allowed_services=[])

    built = build_collectors(config, spool_depth=lambda: 0, last_push=lambda: None)

    assert [c.name for c in built] == ["agent"]


class StaticCollector:
    def __init__(self, name: str, values: dict[str, float]) -> None:
        self.name = name
        self.values = values

    def collect(self) -> dict[str, float]:
        return self.values


class BrokenCollector:
    name = "broken"

    def collect(self) -> dict[str, float]:
        raise RuntimeError("sensor on fire")


def test_collect_all_skips_a_raising_collector_and_logs_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collectors = [
        StaticCollector("first", {"a": 1.0}),
        BrokenCollector(),
        StaticCollector("last", {"b": 2}),
    ]

    with caplog.at_level(logging.WARNING, logger="homepot_agent.collectors"):
        merged = collect_all(collectors)

    assert merged == {"a": 1.0, "b": 2.0}
    assert any(r.levelno == logging.WARNING and "broken" in r.getMessage() for r in caplog.records)


def test_collect_all_drops_non_finite_values() -> None:
    merged = collect_all(
        [StaticCollector("x", {"ok": 1.5, "nan": math.nan, "inf": math.inf, "neg": -math.inf})]
    )

    assert merged == {"ok": 1.5}
