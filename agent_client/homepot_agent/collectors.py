"""Metric collectors: system (psutil), systemd services, and the agent's own health.

Each collector takes what it reads (the psutil module, a clock, a file path, a
``subprocess.run``-like function) as constructor arguments, in the style of
prometheus_client's ``ProcessCollector(proc=...)``, so tests can feed it fixtures.

``collect()`` returns ``{metric name: float}``; names match the server's pattern
``^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$``.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import psutil

from homepot_agent import contract

logger = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
# The server's metric-name pattern (contract.json); 100 characters at most.
METRIC_NAME_RE = contract.METRIC_NAME
METRIC_NAME_MAX = 100
SYSTEMCTL_TIMEOUT = 10.0

_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_BAD_MOUNT_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")


class Collector(Protocol):
    name: str

    def collect(self) -> dict[str, float]:
        """Metric name -> finite float."""
        ...


def metric_name(*parts: object) -> str:
    """Join ``parts`` with "." into a name the server accepts.

    Any character outside ``[A-Za-z0-9_.:-]`` becomes "_", a name that does not
    start with a letter or "_" gets a leading "_", and the result is cut to 100 chars.
    """
    name = _BAD_METRIC_CHARS.sub("_", ".".join(str(p) for p in parts))
    if not name or not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        name = "_" + name
    return name[:METRIC_NAME_MAX]


def mount_label(mountpoint: str) -> str:
    """A mount point as one metric name part: "/" -> "root", "/boot/firmware" -> "boot_firmware"."""
    label = _BAD_MOUNT_CHARS.sub("_", mountpoint.strip("/\\"))
    return label.strip("_") or "root"


def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The kernel's boot id (changes on every boot), or "" if it cannot be read."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


class SystemCollector:
    """CPU, load, memory, swap, disks, network, temperatures, uptime, process count.

    Disk and network rates are the difference to the previous ``collect()`` divided by
    the ``clock`` delta; the first call (and a call after a counter went backwards)
    reports no rate for that counter.
    """

    name = "system"

    def __init__(
        self,
        psutil_module: Any = psutil,
        clock: Callable[[], float] = time.monotonic,
        boot_id_path: Path = BOOT_ID_PATH,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._psutil = psutil_module
        self._clock = clock
        self._wall_clock = wall_clock
        self.boot_id_path = boot_id_path
        self._previous: tuple[float, dict[str, float]] | None = None
        self._failed_sections: set[str] = set()

    @property
    def boot_id(self) -> str:
        """The current boot id (a string, so not a metric); "" if unreadable."""
        return boot_id(self.boot_id_path)

    def collect(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        counters: dict[str, float] = {}
        now = self._clock()
        sections: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("cpu", self._cpu),
            ("load", self._load),
            ("memory", self._memory),
            ("disk", self._disks),
            ("uptime", self._uptime),
            ("processes", self._processes),
            ("temperature", self._temperatures),
            ("disk_io", self._disk_io_counters),
            ("network", self._net_counters),
        ]
        for section, read in sections:
            values = self._guarded(section, read)
            target = counters if section in ("disk_io", "network") else metrics
            target.update(values)
        metrics.update(self._rates(now, counters))
        return metrics

    def _guarded(self, section: str, read: Callable[[], dict[str, float]]) -> dict[str, float]:
        """One failing section (a platform gap, a permission) must not lose the others."""
        try:
            values = read()
        except Exception as exc:
            log = logger.debug if section in self._failed_sections else logger.warning
            log("system collector: %s unavailable: %r", section, exc)
            self._failed_sections.add(section)
            return {}
        self._failed_sections.discard(section)
        return values

    def _rates(self, now: float, counters: dict[str, float]) -> dict[str, float]:
        """Per-second rates against the previous call's counters; remembers these."""
        previous, self._previous = self._previous, (now, counters)
        if previous is None:
            return {}
        then, old = previous
        elapsed = now - then
        if elapsed <= 0:
            return {}
        rates: dict[str, float] = {}
        for key, value in counters.items():
            before = old.get(key)
            if before is not None and value >= before:  # a reset/wrap gives no rate
                rates[key] = (value - before) / elapsed
        return rates

    def _cpu(self) -> dict[str, float]:
        ps = self._psutil
        metrics = {"cpu_percent": float(ps.cpu_percent(interval=None))}
        for index, percent in enumerate(ps.cpu_percent(interval=None, percpu=True)):
            metrics[metric_name("cpu", f"core{index}", "percent")] = float(percent)
        return metrics

    def _load(self) -> dict[str, float]:
        one, five, fifteen = self._psutil.getloadavg()
        return {"load.1m": float(one), "load.5m": float(five), "load.15m": float(fifteen)}

    def _memory(self) -> dict[str, float]:
        memory = self._psutil.virtual_memory()
        swap = self._psutil.swap_memory()
        return {
            "memory_percent": float(memory.percent),
            "memory.used_bytes": float(memory.used),
            "memory.available_bytes": float(memory.available),
            "swap.percent": float(swap.percent),
            "swap.used_bytes": float(swap.used),
        }

    def _disks(self) -> dict[str, float]:
        """Usage per real (non-pseudo) mount, plus ``disk_percent`` for "/"."""
        metrics: dict[str, float] = {}
        mounts = [p.mountpoint for p in self._psutil.disk_partitions(all=False)]
        if "/" not in mounts:
            mounts.insert(0, "/")  # e.g. in a container "/" is an overlay, still wanted
        for mountpoint in dict.fromkeys(mounts):  # bind mounts repeat a mount point
            try:
                usage = self._psutil.disk_usage(mountpoint)
            except OSError:  # PermissionError, or a mount that vanished
                continue
            label = mount_label(mountpoint)
            metrics[metric_name("disk", label, "percent")] = float(usage.percent)
            metrics[metric_name("disk", label, "used_bytes")] = float(usage.used)
            if mountpoint == "/":
                metrics["disk_percent"] = float(usage.percent)
        return metrics

    def _uptime(self) -> dict[str, float]:
        return {"uptime_seconds": max(0.0, self._wall_clock() - self._psutil.boot_time())}

    def _processes(self) -> dict[str, float]:
        return {"process_count": float(len(self._psutil.pids()))}

    def _temperatures(self) -> dict[str, float]:
        """``temperature.<sensor>.<label or index>``; nothing where psutil has no sensors."""
        read = getattr(self._psutil, "sensors_temperatures", None)
        if read is None:  # macOS, Windows
            return {}
        metrics: dict[str, float] = {}
        for sensor, entries in (read() or {}).items():
            for index, entry in enumerate(entries):
                if entry.current is None:
                    continue
                name = metric_name("temperature", sensor, entry.label or index)
                if name in metrics:  # two entries with the same label
                    name = metric_name("temperature", sensor, f"{entry.label}_{index}")
                metrics[name] = float(entry.current)
        return metrics

    def _disk_io_counters(self) -> dict[str, float]:
        io = self._psutil.disk_io_counters(perdisk=False)
        if io is None:  # no physical disks
            return {}
        return {
            "disk.read_bytes_per_s": float(io.read_bytes),
            "disk.write_bytes_per_s": float(io.write_bytes),
        }

    def _net_counters(self) -> dict[str, float]:
        counters: dict[str, float] = {}
        for iface, io in self._psutil.net_io_counters(pernic=True).items():
            if iface == "lo":
                continue
            errors = io.errin + io.errout + io.dropin + io.dropout
            counters[metric_name("net", iface, "rx_bytes_per_s")] = float(io.bytes_recv)
            counters[metric_name("net", iface, "tx_bytes_per_s")] = float(io.bytes_sent)
            counters[metric_name("net", iface, "errors_per_s")] = float(errors)
        return counters


class ServicesCollector:
    """The state of each named systemd service, from one ``systemctl is-active`` call."""

    name = "services"

    def __init__(
        self,
        services: list[str],
        run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
        systemctl: str = "systemctl",
    ) -> None:
        self.services = list(services)
        self._run = run
        self._systemctl = systemctl
        self._warned = False

    def collect(self) -> dict[str, float]:
        if not self.services:
            return {"services.active": 0.0, "services.failed": 0.0}
        states = self._states()
        if states is None:
            return {}
        # _states() returned exactly one state per service, in order
        metrics = {
            metric_name("service", service, "active"): 1.0 if states[i] == "active" else 0.0
            for i, service in enumerate(self.services)
        }
        metrics["services.active"] = float(states.count("active"))
        metrics["services.failed"] = float(states.count("failed"))
        return metrics

    def _states(self) -> list[str] | None:
        """One state per service, or None (warned once) when systemctl cannot tell."""
        argv = [self._systemctl, "is-active", "--", *self.services]
        try:
            # is-active exits non-zero when any unit is not active: that is not an error here
            result = self._run(
                argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False
            )
        except FileNotFoundError:
            return self._give_up("%s not found; service states not collected", self._systemctl)
        except subprocess.TimeoutExpired:
            return self._give_up("%s is-active timed out", self._systemctl)
        except OSError as exc:
            return self._give_up("%s could not run: %r", self._systemctl, exc)
        states = [line.strip() for line in (result.stdout or "").splitlines() if line.strip()]
        if len(states) != len(self.services):
            return self._give_up(
                "%s is-active printed %d states for %d services: %r",
                self._systemctl,
                len(states),
                len(self.services),
                (result.stderr or "").strip()[:200],
            )
        self._warned = False
        return states

    def _give_up(self, message: str, *args: object) -> None:
        """Warn the first time in a row systemctl fails, then only at debug level."""
        (logger.debug if self._warned else logger.warning)(message, *args)
        self._warned = True
        return None


class AgentHealthCollector:
    """The agent's own spool depth, memory, CPU time and time since the last push."""

    name = "agent"

    def __init__(
        self,
        spool_depth: Callable[[], int],
        last_push: Callable[[], float | None],
        wall_clock: Callable[[], float] = time.time,
        process: Any = None,
    ) -> None:
        self._spool_depth = spool_depth
        self._last_push = last_push
        self._wall_clock = wall_clock
        self._process = process if process is not None else psutil.Process()

    def collect(self) -> dict[str, float]:
        cpu = self._process.cpu_times()
        metrics = {
            "agent.spool_depth": float(self._spool_depth()),
            "agent.rss_bytes": float(self._process.memory_info().rss),
            "agent.cpu_seconds": float(cpu.user + cpu.system),
        }
        pushed = self._last_push()
        if pushed is not None:
            metrics["agent.seconds_since_push"] = max(0.0, self._wall_clock() - pushed)
        return metrics


def build_collectors(
    config: Any,
    *,
    spool_depth: Callable[[], int],
    last_push: Callable[[], float | None],
) -> list[Collector]:
    """The collectors ``config.enabled_collectors`` names, in a fixed order.

    The services collector is built only when ``config.allowed_services`` is non-empty.
    """
    enabled = set(config.enabled_collectors)
    collectors: list[Collector] = []
    if "system" in enabled:
        collectors.append(SystemCollector())
    if "services" in enabled and config.allowed_services:
        collectors.append(ServicesCollector(list(config.allowed_services)))
    if "agent" in enabled:
        collectors.append(AgentHealthCollector(spool_depth=spool_depth, last_push=last_push))
    return collectors


def collect_all(collectors: Iterable[Collector]) -> dict[str, float]:
    """Merge every collector's metrics; one that raises is logged and skipped.

    Non-finite (NaN, infinite) and non-numeric values are dropped.
    """
    merged: dict[str, float] = {}
    for collector in collectors:
        name = getattr(collector, "name", type(collector).__name__)
        try:
            values = collector.collect()
        except Exception:
            logger.warning("collector %r failed; skipped this round", name, exc_info=True)
            continue
        for key, value in values.items():
            if _is_finite_number(value):
                merged[key] = float(value)
            else:
                logger.debug("collector %r: dropped %s=%r (not a finite number)", name, key, value)
    return merged
