"""The agent as its own process, and the simulated fleet, against a live server."""

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest
from homepot_agent.simulate import build_fleet
from homepot_agent.spool import Spool

from analytics.models import Sample
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
