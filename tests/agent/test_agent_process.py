"""The agent as its own process, and the simulated fleet, against a live server."""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from homepot_agent.config import load_config, save_config
from homepot_agent.simulate import build_fleet
from homepot_agent.spool import Spool

from analytics.models import Sample
from commands.models import Command
from commands.services import CommandSpec, command_enqueue
from devices import services
from devices.models import Device

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_keeps_unsent_samples_in_the_spool_and_exits_cleanly(register, tmp_path):
    config = register("pi-proc")
    state = tmp_path / "state"
    env = {
        **os.environ,
        "HOMEPOT_AGENT_COLLECT_INTERVAL": "0.5",
        "HOMEPOT_AGENT_PUSH_INTERVAL": "3600",  # nothing is pushed before the SIGTERM
        "HOMEPOT_AGENT_ENABLED_COLLECTORS": "agent",
    }
    agent = subprocess.Popen(
        [sys.executable, "-m", "homepot_agent.cli", "--config", str(config), "run"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)

    agent.send_signal(signal.SIGTERM)

    assert agent.wait(timeout=15) == 0, agent.stderr.read()
    assert Spool(state / "spool.sqlite3", 100).depth() >= 2


def test_a_simulated_fleet_enrolls_reports_and_answers_commands(
    tmp_path, live_server, site, operator
):
    token = services.enrollment_token_create(actor=operator, site=site, max_uses=10).token
    args = argparse.Namespace(
        server=live_server.url,
        site="lab-1",
        token=token,
        count=3,
        state_dir=tmp_path,
        interval=10.0,
        wait=5,
    )
    fleet = build_fleet(args)
    devices = Device.objects.filter(is_simulated=True)
    assert devices.count() == 3
    spec = CommandSpec.validated(command_type="ping", payload={})
    command, _ = command_enqueue(actor=operator, device=devices.first(), spec=spec)

    for agent in fleet:
        agent.collect_once()
        assert agent.push_once()
        assert agent.poll_once()

    assert Sample.objects.filter(metric__name="cpu_percent").count() == 3
    command.refresh_from_db()
    assert command.status == "succeeded"
    assert len(build_fleet(args)) == 3  # a restart reuses the keys: no new devices
    assert Device.objects.count() == 3


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_command_killed_with_the_agent_is_reported_failed_at_start_up_never_rerun(
    register, tmp_path, operator, systemctl_log
):
    config_path = register("pi-proc")
    config = load_config(config_path, environ={})
    save_config(replace(config, allowed_services=["slow"]), config_path)
    spec = CommandSpec.validated(command_type="restart_service", payload={"service": "slow"})
    command, _ = command_enqueue(
        actor=operator, device=Device.objects.get(public_id="pi-proc"), spec=spec
    )
    argv = [sys.executable, "-m", "homepot_agent.cli", "--config", str(config_path), "run"]
    env = {**os.environ, "HOMEPOT_AGENT_ENABLED_COLLECTORS": "agent"}
    slow_log = systemctl_log.with_name(systemctl_log.name + ".slow")

    first = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    wait_for(lambda: slow_log.exists())  # acknowledged and running
    first.kill()  # a crash: no chance to record anything
    first.wait(timeout=10)
    command.refresh_from_db()
    assert command.status == "in_progress"  # never delivered again by the server

    restarted = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: Command.objects.get(pk=command.pk).status != "in_progress")
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)

    command.refresh_from_db()
    assert command.status == "failed"
    assert "not run again" in command.error
    log = systemctl_log.read_text().splitlines()
    assert log.count("restart -- slow") == 1
