"""Builds a real agent from its configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from homepot_agent.agent import Agent, host_attributes
from homepot_agent.collectors import boot_id, build_collectors, collect_all
from homepot_agent.config import AgentConfig
from homepot_agent.executor import Executor
from homepot_agent.files import private_dir
from homepot_agent.lab import FrameSender, LabContext, LabScheduler, build_scheduler
from homepot_agent.ledger import CommandLedger
from homepot_agent.spool import Spool
from homepot_agent.transport import ApiClient


def build_agent(config: AgentConfig, *, api_key: str, **overrides: Any) -> Agent:
    private_dir(config.state_dir)
    client = overrides.pop("client", None) or ApiClient(
        config.server_url,
        device_id=config.device_id,
        api_key=api_key,
        verify=config.tls_verify(),
    )
    spool = Spool(config.spool_path, config.spool_max_samples)
    clock = overrides.get("clock", time.monotonic)
    lab_buses = overrides.pop("lab_buses", {})  # tests: simulated buses and drivers
    agent: Agent | None = None

    def collect_for(current: AgentConfig) -> Callable[[], dict[str, float]]:
        collectors = build_collectors(
            current,
            spool_depth=spool.depth,
            last_push=lambda: agent.status.last_push if agent else None,
        )
        return lambda: collect_all(collectors)

    def lab_for(current: AgentConfig) -> LabScheduler | None:
        context = LabContext(
            clock=clock, send_frame=FrameSender(client.thermal_frame), buses=lab_buses
        )
        return build_scheduler(current.enabled_collectors, current.tables, context)

    def apply(new: AgentConfig) -> None:
        if agent is not None:
            agent.reconfigure(new, collect_for(new), lab_for(new))

    executor = Executor(config, apply_config=apply, **overrides.pop("executor_options", {}))
    agent = Agent(
        config,
        client=client,
        collect=collect_for(config),
        executor=executor,
        ledger=CommandLedger(config.commands_path),
        spool=spool,
        attributes=lambda: host_attributes(boot_id),
        lab=lab_for(config),
        **overrides,
    )
    client.on_thermal = agent.thermal_advice
    return agent
