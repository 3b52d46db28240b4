"""Lab instrument collectors, enabled by name and configured in their own TOML table.

Nothing here imports an instrument library: each collector module imports its
driver (adafruit_*, smbus2, serial) only when its instrument is opened, so the
base agent runs without them.

Adding a collector is one line in ``REGISTRY`` and one module with:

* ``parse(table: dict) -> settings``: validate the ``[name]`` table (raise
  ``ValueError`` with a message that names the key; ``{}`` gives the defaults),
  the settings having an ``interval`` (seconds) attribute;
* ``build(settings, context: LabContext) -> Source``: an object with ``name``,
  ``open()``, ``read() -> {metric: float}`` and ``close()``. ``open`` and ``read``
  may raise anything: the framework reports ``<name>.up = 0``, closes the source,
  logs once per change of state and opens it again at the next interval.

A source may also have ``interval_at(now) -> float`` (its next interval; the
thermal camera speeds up during a live-view lease) and ``advise_thermal(interval,
lease, now)`` (the server's ``X-Thermal-*`` headers).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# collector name -> module implementing parse() and build()
REGISTRY: dict[str, str] = {
    "bme680": "homepot_agent.lab.bme680",
    "mlx90640": "homepot_agent.lab.mlx90640",
    "mcp3424": "homepot_agent.lab.mcp3424",
    "psu": "homepot_agent.lab.psu",
}


class Source(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self) -> dict[str, float]: ...

    def close(self) -> None: ...


@dataclass
class LabContext:
    """What a source may need from the agent, injected so tests drive it."""

    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    # Sends one thermal frame ({ts, width, height, values}); may raise.
    send_frame: Callable[[dict[str, Any]], None] = lambda frame: None
    # Test hooks: name -> a ready bus/driver object the source uses instead of hardware.
    buses: dict[str, Any] = field(default_factory=dict)


def module(name: str) -> Any:
    return importlib.import_module(REGISTRY[name])


def parse_table(name: str, table: Any) -> Any:
    """The typed settings of the ``[name]`` table; ValueError names the key."""
    if not isinstance(table, dict):
        raise ValueError(f"{name}: must be a table")
    return module(name).parse(table)


class Guarded:
    """One source, isolated: a failure becomes ``<name>.up = 0``, never an exception,
    logged when the state changes (not every sample)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name: str = source.name
        self.opened = False
        self.up: bool | None = None  # unknown until the first read

    def collect(self) -> dict[str, float]:
        try:
            if not self.opened:
                self.source.open()
                self.opened = True
            values = dict(self.source.read())
        except Exception as exc:
            self._down(exc)
            return {f"{self.name}.up": 0.0}
        if self.up is False:
            logger.warning("%s: reading again", self.name)
        self.up = True
        values[f"{self.name}.up"] = 1.0
        return values

    def _down(self, exc: Exception) -> None:
        if self.up is not False:
            logger.warning("%s: not available (%s: %s)", self.name, type(exc).__name__, exc)
        self.up = False
        self.opened = False
        try:
            self.source.close()
        except Exception:  # closing a broken bus may fail too; it is reopened later
            logger.debug("%s: close failed", self.name, exc_info=True)


@dataclass
class _Slot:
    guarded: Guarded
    interval: float
    due: float

    def interval_at(self, now: float) -> float:
        at = getattr(self.guarded.source, "interval_at", None)
        return at(now) if at is not None else self.interval

    def advance(self, now: float) -> None:
        """Drift-free: whole intervals from the last due time."""
        interval = self.interval_at(now)
        missed = max(0, int((now - self.due) // interval))
        self.due += interval * (missed + 1)


class LabScheduler:
    """Runs each lab collector on its own interval (the system metrics keep
    ``collect_interval``)."""

    def __init__(self, sources: list[tuple[Any, float]], clock: Callable[[], float]) -> None:
        now = clock()
        self.clock = clock
        self.slots = [_Slot(Guarded(source), interval, now) for source, interval in sources]

    def next_due(self) -> float | None:
        return min((slot.due for slot in self.slots), default=None)

    def collect_due(self, now: float) -> dict[str, float]:
        """The metrics of every collector due at ``now``."""
        merged: dict[str, float] = {}
        for slot in self.slots:
            if now >= slot.due:
                merged.update(slot.guarded.collect())
                slot.advance(now)
        return merged

    def advise_thermal(self, interval: float, lease: float, now: float) -> None:
        """The server's X-Thermal-Interval/Lease: sources that stream frames speed up."""
        for slot in self.slots:
            advise = getattr(slot.guarded.source, "advise_thermal", None)
            if advise is None:
                continue
            advise(interval, lease, now)
            slot.due = min(slot.due, now + slot.interval_at(now))

    def close(self) -> None:
        for slot in self.slots:
            if slot.guarded.opened:
                try:
                    slot.guarded.source.close()
                except Exception:
                    logger.debug("%s: close failed", slot.guarded.name, exc_info=True)


def build_scheduler(
    enabled: list[str], tables: dict[str, dict[str, Any]], context: LabContext
) -> LabScheduler | None:
    """The scheduler for the enabled lab collectors, or None when none is enabled."""
    sources = []
    for name in enabled:
        if name not in REGISTRY:
            continue
        settings = parse_table(name, tables.get(name, {}))
        sources.append((module(name).build(settings, context), float(settings.interval)))
    return LabScheduler(sources, context.clock) if sources else None


def positive(table: dict[str, Any], key: str, default: float) -> float:
    """A finite number > 0 from the table (bools are not numbers)."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{key}: must be a number more than 0")
    if value == float("inf"):
        raise ValueError(f"{key}: must be finite")
    return float(value)


def integer(table: dict[str, Any], key: str, default: int, allowed: Any = None) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: must be an integer")
    if allowed is not None and value not in allowed:
        raise ValueError(f"{key}: {value!r} is not one of {sorted(allowed)}")
    return value


def no_unknown_keys(table: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting")


class FrameSender:
    """Sends frames through ``send``; a failure is logged once per change of state
    (frames are live data: a lost one is not sent again)."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send
        self.failing = False

    def __call__(self, frame: dict[str, Any]) -> None:
        try:
            self.send(frame)
        except Exception as exc:
            if not self.failing:
                logger.warning("thermal frame not sent (%s); later frames are tried", exc)
            self.failing = True
            return
        if self.failing:
            logger.warning("thermal frames are sent again")
        self.failing = False
