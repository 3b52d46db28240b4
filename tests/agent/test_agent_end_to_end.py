"""The real agent against a live server: enrollment, telemetry, commands,
a restart, and an outage. The agent's clock is driven by the test; the HTTP,
the server, its database and the fake systemctl on PATH are real."""

import stat
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from homepot_agent import cli
from homepot_agent.config import load_config
from homepot_agent.runtime import build_agent

from analytics.models import LatestValue, Sample
from commands.services import commands_sweep
from devices.models import Device
from tests.agent.helpers import Clock, calls, poll_until_idle, queue, settle, start_agent
from tests.agent.outage import Outage

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_enrolls_once_with_a_private_key_file(registered, tmp_path, live_server):
    key_file = tmp_path / "state" / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Device.objects.get(public_id="pi-e2e").site.public_id == "lab-1"
    again = cli.main(
        [
            "--config",
            str(registered),
            "register",
            "--server",
            live_server.url,
            "--site",
            "lab-1",
            "--token",
            "x",
            "--device-id",
            "pi-e2e",
        ]
    )
    assert again == cli.EXIT_CONFIG  # refuses without --force


def test_a_refused_token_and_a_wrong_url_exit_clearly(tmp_path, live_server, site, capsys):
    base = ["--config", str(tmp_path / "a.toml"), "register", "--site", "lab-1", "--device-id", "x"]

    assert (
        cli.main([*base, "--server", live_server.url, "--token", "het_bogus"]) == cli.EXIT_REFUSED
    )
    assert "not recognised" in capsys.readouterr().err
    assert (
        cli.main([*base, "--server", "http://127.0.0.1:1", "--token", "t"]) == cli.EXIT_UNREACHABLE
    )


def test_telemetry_arrives_as_collected(registered, systemctl_log):
    agent = start_agent(registered, Clock())

    agent.collect_once()
    collected = dict(agent.buffer[0][1])
    assert agent.push_once()

    stored = dict(
        LatestValue.objects.filter(device__public_id="pi-e2e").values_list("metric__name", "value")
    )
    assert stored == pytest.approx(collected)
    assert {"cpu_percent", "memory_percent", "disk_percent", "service.nginx.active"} <= set(stored)


def test_ping_succeeds(registered, operator, systemctl_log):
    command = queue(operator, "ping")
    agent = start_agent(registered, Clock())

    assert agent.poll_once()
    poll_until_idle(agent)

    command.refresh_from_db()
    assert command.status == "succeeded"
    assert command.result["pong"] is True


def test_an_allowed_service_restarts_once_and_a_disallowed_one_is_rejected(
    registered, operator, systemctl_log
):
    allowed = queue(operator, "restart_service", {"service": "nginx"})
    refused = queue(operator, "restart_service", {"service": "sshd"})

    poll_until_idle(start_agent(registered, Clock()))

    allowed.refresh_from_db()
    refused.refresh_from_db()
    assert allowed.status == "succeeded"
    assert refused.status == "rejected"
    assert calls(systemctl_log) == ["restart -- nginx"]


def test_a_command_is_never_run_twice_across_a_restart(
    registered, operator, systemctl_log, live_server
):
    command = queue(operator, "restart_service", {"service": "nginx"})
    outage = Outage(live_server.thread.host, live_server.thread.port)
    outage.up()
    first = start_agent(registered, Clock(), server_url=outage.url)
    run = first.executor.execute

    def run_then_lose_the_server(command: dict):
        outcome = run(command)
        outage.down()  # it ran; its result cannot be sent
        return outcome

    first.executor.execute = run_then_lose_the_server
    pending = first.client.pending().commands
    first.run_command(pending[0])
    settle(first)
    assert calls(systemctl_log) == ["restart -- nginx"]
    command.refresh_from_db()
    assert command.status == "in_progress"

    outage.up()
    restarted = start_agent(registered, Clock(), server_url=outage.url)
    restarted.run_command(pending[0])  # delivered again: refused by the ledger
    assert restarted.poll_once()  # sends the result it still owes

    command.refresh_from_db()
    assert command.status == "succeeded"
    assert calls(systemctl_log) == ["restart -- nginx"]
    outage.down()


def test_every_sample_arrives_exactly_once_across_an_outage(registered, live_server):
    outage = Outage(live_server.thread.host, live_server.thread.port)
    outage.up()
    clock = Clock()
    produced: list[float] = []

    def collect() -> dict[str, float]:
        produced.append(float(len(produced)))
        return {"seq": produced[-1]}

    started = time.time() - 2000  # device timestamps move with the test's clock
    agent = start_agent(
        registered, clock, server_url=outage.url, collect_interval=10, push_interval=30
    )
    agent.wall_clock = lambda: started + clock.now
    agent.collect = collect

    def run_for(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            agent.step()
            clock.now += 1

    run_for(95)
    outage.down()
    run_for(300)  # the server is gone: samples pile up in the spool
    assert agent.spool.depth() > 0
    outage.up()
    run_for(900)  # back: the spool drains once the backoff lets it
    assert agent.push_once()  # and what was collected since the last push
    outage.down()

    seqs = Sample.objects.filter(device__public_id="pi-e2e", metric__name="seq").values_list(
        "value", flat=True
    )
    assert len(produced) > 100
    assert sorted(seqs) == produced  # every sample, exactly once
    assert agent.spool.depth() == 0


def test_update_config_applies_new_intervals_without_a_restart(registered, operator):
    command = queue(operator, "update_config", {"collect_interval": 5, "poll_interval": 7})
    agent = start_agent(registered, Clock())

    poll_until_idle(agent)

    command.refresh_from_db()
    assert command.status == "succeeded"
    assert (agent.collecting.interval, agent.config.collect_interval) == (5, 5)


def test_a_command_whose_ack_was_lost_runs_when_delivered_again(
    registered, operator, systemctl_log, live_server
):
    command = queue(operator, "restart_service", {"service": "nginx"})
    outage = Outage(live_server.thread.host, live_server.thread.port)
    outage.up()
    agent = start_agent(registered, Clock(), server_url=outage.url)
    pending = agent.client.pending().commands
    outage.down()

    agent.run_command(pending[0])  # the ack cannot get through: it must not run

    assert calls(systemctl_log) == []
    outage.up()
    commands_sweep(now=timezone.now() + timedelta(minutes=10))  # no ack: queued again
    assert agent.poll_once()
    poll_until_idle(agent)
    command.refresh_from_db()
    assert command.status == "succeeded"
    assert calls(systemctl_log) == ["restart -- nginx"]
    outage.down()


def test_a_command_interrupted_by_a_restart_is_reported_not_rerun(
    registered, operator, systemctl_log
):
    command = queue(operator, "restart_service", {"service": "nginx"})
    first = start_agent(registered, Clock())
    first.client.pending()
    first.ledger.claim(str(command.public_id))
    first.ledger.mark_started(str(command.public_id))  # the agent died while running it
    commands_sweep(now=timezone.now() + timedelta(minutes=10))  # queued again

    poll_until_idle(start_agent(registered, Clock()))

    command.refresh_from_db()
    assert command.status == "failed"
    assert "not run again" in command.error
    assert calls(systemctl_log) == []


def test_a_reboot_is_reported_in_progress_then_confirmed_after_the_restart(
    registered, operator, systemctl_log
):
    command = queue(operator, "reboot")
    follower = queue(operator, "ping")
    config = load_config(registered, environ={})

    def agent_on_boot(boot: str):
        return build_agent(
            config,
            api_key=cli.read_key(config),
            clock=Clock(),
            executor_options={"boot_id": lambda: boot},
        )

    before = agent_on_boot("boot-1")
    before.start_up()
    poll_until_idle(before)

    command.refresh_from_db()
    assert command.status == "in_progress"
    assert calls(systemctl_log) == ["reboot"]
    assert before.rebooting
    follower.refresh_from_db()
    assert follower.status == "queued"  # nothing more is taken on while going down

    after = agent_on_boot("boot-2")
    after.start_up()
    poll_until_idle(after)

    command.refresh_from_db()
    follower.refresh_from_db()
    assert command.status == "succeeded"
    assert command.result["boot_id_after"] == "boot-2"
    assert follower.status == "succeeded"
