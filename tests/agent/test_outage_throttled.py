"""The outage the issue asks for: the live server, behind a proxy, answers 429
(with Retry-After) and then 503 for minutes, then recovers. Every sample taken
meanwhile arrives exactly once, every command result is recorded, and the
agent is back within a minute of the recovery (agent clock)."""

import time

import pytest

from analytics.models import Sample
from commands.models import Command
from tests.agent.faults import Canned, FaultyProxy, always
from tests.agent.helpers import Clock, queue, settle, start_agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_agent_rides_out_429_then_503_and_is_back_within_a_minute(
    registered, operator, systemctl_log, live_server
):
    proxy = FaultyProxy(live_server.thread.host, live_server.thread.port)
    clock = Clock()
    agent = start_agent(
        registered, clock, server_url=proxy.url, collect_interval=10, push_interval=30
    )
    started = time.time() - 3000  # device timestamps move with the agent's clock
    agent.wall_clock = lambda: started + clock.now
    produced: list[float] = []

    def collect() -> dict[str, float]:
        produced.append(float(len(produced)))
        return {"seq": produced[-1]}

    agent.collect = collect
    successes: list[tuple[str, float]] = []

    def run_for(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            pushed, polled = agent.status.last_push, agent.status.last_poll
            agent.step()
            if agent.status.last_push != pushed:
                successes.append(("push", clock.now))
            if agent.status.last_poll != polled:
                successes.append(("poll", clock.now))
            clock.now += 1

    commands = [queue(operator, "ping")]
    run_for(60)

    # A command runs, and its result is refused as the throttling starts.
    commands.append(queue(operator, "restart_service", {"service": "nginx"}))
    proxy.answer = always(Canned(429, {"Retry-After": "20"}), "/status")
    agent.polling.due = clock.now
    run_for(1)
    settle(agent)
    proxy.answer = always(Canned(429, {"Retry-After": "20"}))
    commands.append(queue(operator, "ping"))  # queued during the outage
    run_for(200)
    proxy.answer = always(Canned(503))
    run_for(300)
    assert agent.spool.depth() > 0
    assert agent.ledger.unsent()  # the result is still owed
    assert {429, 503} <= set(proxy.statuses("device-metrics"))
    assert 429 in proxy.statuses("/status")

    recovered_at = clock.now
    proxy.answer = always(None)
    run_for(150)
    settle(agent)
    run_for(30)
    assert agent.push_once()  # and what was collected since the last push

    back = {
        kind: min(t for k, t in successes if k == kind and t >= recovered_at)
        for kind in ("push", "poll")
    }
    assert back["push"] - recovered_at <= 60
    assert back["poll"] - recovered_at <= 60
    seqs = Sample.objects.filter(device__public_id="pi-e2e", metric__name="seq").values_list(
        "value", flat=True
    )
    assert len(produced) > 70
    assert sorted(seqs) == produced  # every sample, exactly once
    assert (agent.spool.depth(), agent.spool.quarantined()) == (0, 0)
    assert [Command.objects.get(pk=c.pk).status for c in commands] == ["succeeded"] * 3
    assert agent.ledger.unsent() == []
    proxy.close()
