"""Commands run one at a time on a worker thread while the agent keeps
collecting and pushing: a long command makes no neighbour miss its deadline
and leaves no hole in the telemetry."""

import threading
import time

import pytest
from django.db import connection

from analytics.models import Sample
from commands.models import Command
from commands.services import commands_sweep
from tests.agent.helpers import Clock, calls, queue, start_agent

pytestmark = pytest.mark.django_db(transaction=True)


class Sweeper:
    """Celery beat's command sweep, every 0.2 s, in a thread of its own."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.wait(0.2):
                commands_sweep()
        finally:
            connection.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def slow_running(log) -> bool:
    marks = calls(log.with_name(log.name + ".slow"))
    return marks.count("started") > marks.count("ended")


def test_a_long_command_delays_neither_its_neighbours_nor_telemetry(
    registered, operator, systemctl_log, settings
):
    # Any command still waiting one second after its delivery would be re-queued.
    settings.COMMAND_ACK_TIMEOUT_SECONDS = 1
    long = queue(operator, "restart_service", {"service": "slow"})
    quick = [queue(operator, "ping"), queue(operator, "service_status", {"service": "nginx"})]
    clock = Clock()
    agent = start_agent(registered, clock, collect_interval=5, push_interval=10)
    started = time.time() - 3000
    agent.wall_clock = lambda: started + clock.now
    sequence = iter(range(10_000))
    agent.collect = lambda: {"seq": float(next(sequence))}
    sweeper = Sweeper()
    stored_while_long_ran: list[int] = []
    commands = Command.objects.filter(pk__in=[long.pk, *(c.pk for c in quick)])

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        agent.step()
        clock.now += 1
        time.sleep(0.02)
        if slow_running(systemctl_log):
            stored_while_long_ran.append(Sample.objects.filter(metric__name="seq").count())
        if not commands.exclude(status__in=["succeeded", "failed", "rejected"]).exists():
            break
    sweeper.close()

    assert {c.command_type: c.status for c in commands} == {
        "restart_service": "succeeded",
        "ping": "succeeded",
        "service_status": "succeeded",
    }
    assert all(c.attempts == 1 for c in commands)  # delivered once each, never re-queued
    assert stored_while_long_ran, "the long command was never seen running"
    # samples collected while it ran reached the server before it ended
    assert max(stored_while_long_ran) - min(stored_while_long_ran) >= 3
    assert calls(systemctl_log).count("restart -- slow") == 1


def test_the_running_loop_takes_the_next_command_as_soon_as_one_finishes(
    registered, operator, systemctl_log
):
    long = queue(operator, "restart_service", {"service": "slow"})
    quick = queue(operator, "ping")
    agent = start_agent(registered, time.monotonic, poll_interval=600)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while Command.objects.get(pk=quick.pk).status != "succeeded":
            assert time.monotonic() < deadline, "the second command never ran"
            time.sleep(0.05)
    finally:
        stop.set()
        agent.wake()
        loop.join(timeout=15)

    long.refresh_from_db()
    quick.refresh_from_db()
    assert long.status == "succeeded"
    # taken on right after the first finished, not a poll interval later
    assert (quick.delivered_at - long.finished_at).total_seconds() < 1.5
    assert not loop.is_alive()
