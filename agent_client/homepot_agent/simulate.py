"""A simulated fleet in one process: each device enrolls with its own key,
reports plausible, varying metrics and answers commands without running them.
For demos and load tests."""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from homepot_agent.agent import Agent, InlineWorker
from homepot_agent.config import ALL_COMMANDS, AgentConfig, validate
from homepot_agent.executor import Outcome
from homepot_agent.files import private_dir, write_private
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


class SimulatedExecutor:
    """Accepts every known command and pretends it worked; runs nothing."""

    def check(self, command: dict[str, Any]) -> Outcome | None:
        if command.get("command_type") not in ALL_COMMANDS:
            return Outcome("rejected", {}, error="unknown command type")
        return None

    def execute(self, command: dict[str, Any]) -> Outcome:
        return Outcome("succeeded", {"simulated": True, "command_type": command["command_type"]})

    def confirm_reboot(self, ledger: CommandLedger) -> None:
        return None

    def reboot_now(self) -> None:  # pragma: no cover - simulated devices never reboot
        return None


def _enroll(args: argparse.Namespace, device_id: str, key_file: Path) -> str:
    if key_file.exists():
        return key_file.read_text().strip()
    client = ApiClient(args.server)
    body = {
        "device_id": device_id,
        "name": f"Simulated {device_id}",
        "device_type": "simulated",
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
    for index in range(args.count):
        device_id = f"sim-{host}-{index:03d}"
        try:
            api_key = _enroll(args, device_id, args.state_dir / f"{device_id}.key")
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
            allow_insecure_http=getattr(args, "allow_insecure_http", False),
        )
        validate(config)
        agents.append(
            Agent(
                config,
                client=ApiClient(args.server, device_id=device_id, api_key=api_key),
                collect=SimulatedMetrics(seed=index),
                executor=SimulatedExecutor(),
                ledger=CommandLedger(args.state_dir / f"{device_id}.commands.sqlite3"),
                spool=Spool(args.state_dir / f"{device_id}.spool.sqlite3", 10_000),
                attributes=lambda d=device_id: {"simulated": True, "hostname": d},
                worker=InlineWorker(),  # its commands take no time: no thread per device
            )
        )
    return agents


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
        due = (
            min(s.due for a in agents for s in (a.collecting, a.pushing, a.polling))
            if agents
            else time.monotonic() + 1
        )
        stop.wait(max(0.05, due - time.monotonic()))
    for agent in agents:
        agent.flush()
    return 0
