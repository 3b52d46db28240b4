"""Helpers shared by the agent tests: a driven clock, an agent built from a
registered config, queueing a command as the operator."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from homepot_agent import cli
from homepot_agent.agent import Agent
from homepot_agent.config import load_config
from homepot_agent.runtime import build_agent

from commands.models import Command
from commands.services import CommandSpec, command_enqueue
from devices.models import Device


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start_agent(config_path: Path, clock: Clock, **changes: Any) -> Agent:
    config = replace(load_config(config_path, environ={}), **changes)
    return build_agent(config, api_key=cli.read_key(config), clock=clock)


def queue(
    operator, command_type: str, payload: dict | None = None, public_id: str = "pi-e2e"
) -> Command:
    spec = CommandSpec.validated(command_type=command_type, payload=payload)
    command, _ = command_enqueue(
        actor=operator, device=Device.objects.get(public_id=public_id), spec=spec
    )
    return command


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def settle(agent: Agent, timeout: float = 10.0) -> None:
    """Wait (real time) until the agent's command worker is idle."""
    deadline = time.monotonic() + timeout
    while agent.commands_busy():
        assert time.monotonic() < deadline, "the command worker did not finish"
        time.sleep(0.01)


def poll_until_idle(agent: Agent, rounds: int = 10) -> None:
    """Poll, let the worker finish, repeat until nothing is owed or running:
    what the loop does when a command finishes."""
    for _ in range(rounds):
        agent.poll_once()
        settle(agent)
        if not agent.ledger.unsent() and not agent.commands_busy() and not agent.waiting:
            agent.poll_once()  # one more: a command may still be queued on the server
            settle(agent)
            if not agent.ledger.unsent():
                return
