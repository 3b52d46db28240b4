"""A simulated fleet in one process: each device enrolls with its own key,
reports plausible, varying metrics and answers commands without running them.
Some of them (a quarter by default, at least one) are lab monitors: a simulated
bench with a BME680, a thermal camera whose warm spot drifts, an ADC and a
supply that answers psu_set / psu_output. For demos and load tests."""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from homepot_agent.agent import Agent, InlineWorker
from homepot_agent.config import ALL_COMMANDS, AgentConfig, validate
from homepot_agent.executor import Outcome
from homepot_agent.files import private_dir, write_private
from homepot_agent.lab import FrameSender, LabContext, LabScheduler
from homepot_agent.lab.mlx90640 import summary as frame_summary
from homepot_agent.ledger import CommandLedger
from homepot_agent.spool import Spool
from homepot_agent.transport import ApiClient, Refused, wait_for_server

logger = logging.getLogger("homepot_agent.simulate")


class SimulatedMetrics:
    """A slow random walk around a daily cycle, different for every device."""

    def __init__(self, seed: int, wall_clock=time.time) -> None:
        self.random = random.Random(seed)
        self.wall_clock = wall_clock
        self.load = self.random.uniform(5, 40)
        self.memory = self.random.uniform(20, 70)
        self.disk = self.random.uniform(10, 80)

    def __call__(self) -> dict[str, float]:
        self.load = min(100.0, max(0.0, self.load + self.random.gauss(0, 3)))
        daily = 10 * math.sin(self.wall_clock() / 86400 * 2 * math.pi)
        self.disk = min(99.0, self.disk + self.random.uniform(0, 0.01))
        return {
            "cpu_percent": round(min(100.0, max(0.0, self.load + daily)), 2),
            "memory_percent": round(min(100.0, max(0.0, self.memory + self.random.gauss(0, 1))), 2),
            "disk_percent": round(self.disk, 2),
            "network_latency_ms": round(abs(self.random.gauss(25, 8)), 2),
            "temperature.cpu": round(45 + self.load / 5 + self.random.gauss(0, 0.5), 2),
        }


# --- Simulated lab monitors ----------------------------------------------------------------------

LAB_MONITOR = "lab_monitor"
LAB_SHARE = 0.25  # of the fleet, by default (at least one device)
PSU_COMMANDS = {"psu_set", "psu_output"}
THERMAL_WIDTH, THERMAL_HEIGHT = 32, 24
MAX_LIVE_HZ = 4.0


class SimulatedBench:
    """A lab bench: a supply powering a board (a resistive load that warms up),
    read by an environmental sensor, a thermal camera and an ADC."""

    max_voltage, max_current = 30.0, 5.0  # the simulated [psu] limits

    def __init__(self, seed: int, wall_clock: Callable[[], float] = time.time) -> None:
        self.random = random.Random(seed)
        self.wall_clock = wall_clock
        self.voltage_set, self.current_limit, self.output = 12.0, 1.5, True
        self.load_ohms = self.random.uniform(20, 40)
        self.room = self.random.uniform(20.5, 23.5)
        self.humidity = self.random.uniform(35, 50)
        self.gas = self.random.uniform(80_000, 150_000)
        # the warm spot (the board's FPGA) wanders slowly over the frame
        self.spot_x, self.spot_y = self.random.uniform(8, 24), self.random.uniform(6, 18)

    # --- the supply ---------------------------------------------------------------------

    def refusal(self, kind: str, payload: dict[str, Any]) -> str:
        if kind == "psu_output":
            return "" if isinstance(payload.get("enabled"), bool) else "enabled: not true or false"
        if not payload:
            return "payload: name voltage, current or both"
        for name, limit in (("voltage", self.max_voltage), ("current", self.max_current)):
            value = payload.get(name)
            if value is not None and not 0 <= value <= limit:
                return f"{name}: {value:g} is above this supply's maximum {limit:g}"
        return ""

    def set(self, voltage: float | None, current: float | None) -> dict[str, float]:
        if voltage is not None:
            self.voltage_set = float(voltage)
        if current is not None:
            self.current_limit = float(current)
        return {"voltage_set": self.voltage_set, "current_limit": self.current_limit}

    def switch(self, enabled: bool) -> bool:
        self.output = bool(enabled)
        return self.output

    def supply(self) -> tuple[float, float]:
        """(volts, amps) at the output: constant voltage, or current-limited."""
        if not self.output:
            return 0.0, 0.0
        amps = self.voltage_set / self.load_ohms
        if amps > self.current_limit:
            return self.current_limit * self.load_ohms, self.current_limit
        return self.voltage_set, amps

    # --- what the instruments see -------------------------------------------------------

    def board_heat(self) -> float:
        volts, amps = self.supply()
        return volts * amps * 2.5  # °C above the room per watt, roughly

    def frame(self) -> list[float]:
        self.spot_x = min(28.0, max(3.0, self.spot_x + self.random.gauss(0, 0.3)))
        self.spot_y = min(20.0, max(3.0, self.spot_y + self.random.gauss(0, 0.3)))
        peak, values = 4.0 + self.board_heat(), []
        for row in range(THERMAL_HEIGHT):
            for col in range(THERMAL_WIDTH):
                distance2 = (col - self.spot_x) ** 2 + (row - self.spot_y) ** 2
                warm = peak * math.exp(-distance2 / 18.0)
                values.append(round(self.room + warm + self.random.gauss(0, 0.15), 2))
        return values

    def environment(self) -> dict[str, float]:
        daily = 0.8 * math.sin(self.wall_clock() / 86400 * 2 * math.pi)
        self.humidity = min(70.0, max(25.0, self.humidity + self.random.gauss(0, 0.2)))
        self.gas = min(300_000.0, max(20_000.0, self.gas + self.random.gauss(0, 1500)))
        pressure = 1013.25 + self.random.gauss(0, 0.3)
        temperature = self.room + daily + self.board_heat() * 0.05
        return {
            "bme680.temperature": round(temperature + self.random.gauss(0, 0.05), 2),
            "bme680.humidity": round(self.humidity, 2),
            "bme680.pressure": round(pressure, 2),
            "bme680.gas_resistance": round(self.gas),
            "bme680.altitude": round(44330.0 * (1.0 - (pressure / 1013.25) ** 0.1903), 2),
            # lower resistance, worse air: the shape of the agent's own estimate
            "bme680.iaq": round(min(500.0, max(0.0, 25 + 60 * (120_000 / self.gas - 0.5))), 1),
        }

    def psu_metrics(self) -> dict[str, float]:
        volts, amps = self.supply()
        volts += self.random.gauss(0, 0.002) if self.output else 0.0
        return {
            "psu.voltage": round(volts, 3),
            "psu.current": round(amps, 4),
            "psu.power": round(volts * amps, 3),
            "psu.output": 1.0 if self.output else 0.0,
            "psu.voltage_set": self.voltage_set,
            "psu.current_limit": self.current_limit,
        }

    def adc_metrics(self) -> dict[str, float]:
        volts, amps = self.supply()
        drop = amps * 0.05  # the cable and the shunt
        return {
            "adc.supply_voltage": round(max(0.0, volts - drop + self.random.gauss(0, 0.003)), 4),
            "adc.board_current": round(max(0.0, amps + self.random.gauss(0, 0.002)), 4),
        }


class BenchSource:
    """One of the bench's instruments, as a lab source (see homepot_agent.lab)."""

    def __init__(self, name: str, read: Callable[[], dict[str, float]]) -> None:
        self.name = name
        self.read = read

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None


class SimulatedCamera:
    """The thermal camera: sends every frame, faster while the server's lease holds."""

    name = "mlx90640"

    def __init__(self, bench: SimulatedBench, context: LabContext, interval: float) -> None:
        self.bench, self.context, self.interval = bench, context, interval
        self.fast_interval, self.lease_until = interval, float("-inf")

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def read(self) -> dict[str, float]:
        values = self.bench.frame()
        stamp = datetime.fromtimestamp(self.context.wall_clock(), tz=timezone.utc)
        self.context.send_frame(
            {
                "ts": stamp.isoformat(),
                "width": THERMAL_WIDTH,
                "height": THERMAL_HEIGHT,
                "values": values,
            }
        )
        return frame_summary(values, THERMAL_WIDTH)

    def advise_thermal(self, interval: float, lease: float, now: float) -> None:
        self.fast_interval = max(interval, 1.0 / MAX_LIVE_HZ)
        self.lease_until = now + lease

    def interval_at(self, now: float) -> float:
        if now < self.lease_until:
            return min(self.fast_interval, self.interval)
        return self.interval


def build_lab(bench: SimulatedBench, client: ApiClient, interval: float) -> LabScheduler:
    """The four lab collectors of a lab monitor, reading the simulated bench."""
    context = LabContext(send_frame=FrameSender(client.thermal_frame))
    sources = [
        (BenchSource("bme680", bench.environment), interval),
        (SimulatedCamera(bench, context, interval), interval),
        (BenchSource("mcp3424", bench.adc_metrics), interval),
        (BenchSource("psu", bench.psu_metrics), interval),
    ]
    return LabScheduler(sources, context.clock)


def lab_monitor_count(count: int, share: float) -> int:
    """How many of the fleet are lab monitors: the share, at least one."""
    if count <= 0 or share <= 0:
        return 0
    return min(count, max(1, round(count * share)))


class SimulatedExecutor:
    """Accepts every known command and pretends it worked; runs nothing. A lab
    monitor's bench answers psu_set / psu_output as a real supply would."""

    def __init__(self, bench: SimulatedBench | None = None) -> None:
        self.bench = bench

    def check(self, command: dict[str, Any]) -> Outcome | None:
        kind = command.get("command_type")
        if kind not in ALL_COMMANDS:
            return Outcome("rejected", {}, error="unknown command type")
        if kind in PSU_COMMANDS:
            if self.bench is None:
                return Outcome("rejected", {}, error="No [psu] is configured on this device.")
            refused = self.bench.refusal(kind, command.get("payload") or {})
            if refused:
                return Outcome("rejected", {}, error=refused)
        return None

    def execute(self, command: dict[str, Any]) -> Outcome:
        kind, payload = command["command_type"], command.get("payload") or {}
        if kind == "psu_set" and self.bench is not None:
            held = self.bench.set(payload.get("voltage"), payload.get("current"))
            return Outcome("succeeded", {"requested": dict(payload), **held})
        if kind == "psu_output" and self.bench is not None:
            return Outcome("succeeded", {"output": self.bench.switch(payload["enabled"])})
        return Outcome("succeeded", {"simulated": True, "command_type": kind})

    def confirm_reboot(self, ledger: CommandLedger) -> None:
        return None

    def reboot_now(self) -> None:  # pragma: no cover - simulated devices never reboot
        return None


def _enroll(args: argparse.Namespace, device_id: str, key_file: Path, device_type: str) -> str:
    if key_file.exists():
        return key_file.read_text().strip()
    client = ApiClient(args.server)
    body = {
        "device_id": device_id,
        "name": f"Simulated {device_id}",
        "device_type": device_type,
        "is_simulated": True,
    }
    api_key = client.register(site_id=args.site, token=args.token, device=body)["api_key"]
    write_private(key_file, api_key)
    return api_key


def build_fleet(args: argparse.Namespace) -> list[Agent]:
    private_dir(args.state_dir)
    wait_for_server(ApiClient(args.server), args.wait)
    host = socket.gethostname().split(".")[0]
    agents = []
    labs = lab_monitor_count(args.count, getattr(args, "lab_share", LAB_SHARE))
    for index in range(args.count):
        device_id = f"sim-{host}-{index:03d}"
        is_lab = index < labs
        device_type = LAB_MONITOR if is_lab else "simulated"
        try:
            api_key = _enroll(args, device_id, args.state_dir / f"{device_id}.key", device_type)
        except Refused as exc:
            logger.error("%s could not enroll: %s", device_id, exc)
            continue
        config = replace(
            AgentConfig(),
            server_url=args.server,
            device_id=device_id,
            site_id=args.site,
            state_dir=args.state_dir,
            collect_interval=args.interval,
            push_interval=args.interval * 3,
            poll_interval=args.interval,
            # One thread steps every device: a poll held open would stall them all.
            long_poll_seconds=0,
            allow_insecure_http=getattr(args, "allow_insecure_http", False),
        )
        validate(config)
        client = ApiClient(args.server, device_id=device_id, api_key=api_key)
        bench = SimulatedBench(seed=index) if is_lab else None
        agent = Agent(
            config,
            client=client,
            collect=SimulatedMetrics(seed=index),
            executor=SimulatedExecutor(bench),
            ledger=CommandLedger(args.state_dir / f"{device_id}.commands.sqlite3"),
            spool=Spool(args.state_dir / f"{device_id}.spool.sqlite3", 10_000),
            attributes=lambda d=device_id: {"simulated": True, "hostname": d},
            worker=InlineWorker(),  # its commands take no time: no thread per device
            lab=build_lab(bench, client, args.interval) if bench else None,
        )
        client.on_thermal = agent.thermal_advice  # the live view's lease
        agents.append(agent)
    return agents


def _next_due(agents: list[Agent]) -> float:
    times = [s.due for a in agents for s in (a.collecting, a.pushing, a.polling)]
    lab_times = [a.lab.next_due() for a in agents if a.lab is not None]
    times += [due for due in lab_times if due is not None]
    return min(times) if times else time.monotonic() + 1


def run_fleet(args: argparse.Namespace) -> int:
    agents = build_fleet(args)
    for agent in agents:
        agent.start_up()
    logger.info("simulating %d devices against %s", len(agents), args.server)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Spread the devices over the first interval instead of all at once.
    for index, agent in enumerate(agents):
        offset = args.interval * index / max(1, len(agents))
        for schedule in (agent.collecting, agent.pushing, agent.polling):
            schedule.due += offset
    while not stop.is_set():
        for agent in agents:
            agent.step()
        stop.wait(max(0.05, _next_due(agents) - time.monotonic()))
    for agent in agents:
        agent.flush()
    return 0
