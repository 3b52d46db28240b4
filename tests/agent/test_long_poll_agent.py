"""The real agent's run loop long-polls a real web node (gunicorn + HOMEPOT's
ASGI worker, PostgreSQL, Redis), and polls plainly against Django alone.

A recording proxy (tests.agent.faults) sits between the agent and the server:
it shows which polls asked to `wait`, and when each request arrived.
"""

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
from homepot_agent.agent import Agent
from homepot_agent.config import AgentConfig
from homepot_agent.longpoll import LongPollMode, PollAnswer
from homepot_agent.runtime import build_agent
from homepot_agent.transport import LONG_POLL_HEADER, Pending

from commands.models import Command, Status
from tests.agent.faults import FaultyProxy, Seen

pytestmark = pytest.mark.django_db(transaction=True)

PENDING = "/api/v1/devices/pending"
HEARTBEAT = "/api/v1/devices/heartbeat"


class Running:
    """An agent's run loop on a thread, as `homepot-agent run` runs it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=agent.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> float:
        """Stop it as SIGTERM does; the seconds the loop took to return."""
        started = time.monotonic()
        self.stop.set()
        self.agent.wake()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the agent's loop did not stop"
        seconds = time.monotonic() - started
        # The loop left a poll still out behind (as a stopping process does); it
        # must not reach the server while the next test sets its database up.
        for thread in threading.enumerate():
            if thread.name == "long-poll":
                thread.join(timeout=15)
        return seconds


@pytest.fixture
def run_agent(agent, tmp_path) -> Iterator[Callable[..., Running]]:
    """Start the real agent (built as `run` builds it) for the `agent` device."""
    started: list[Running] = []

    def start(server_url: str, **changes: object) -> Running:
        settings = {
            "collect_interval": 600.0,
            "push_interval": 600.0,
            "enabled_collectors": ["agent"],
            **changes,
        }
        config = AgentConfig(
            server_url=server_url,
            device_id=agent.device.public_id,
            site_id=agent.device.site.public_id,
            state_dir=tmp_path / "state",
            **settings,
        )
        running = Running(build_agent(config, api_key=agent.api_key))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.close()


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str, int], FaultyProxy]]:
    proxies: list[FaultyProxy] = []

    def make(host: str, port: int) -> FaultyProxy:
        proxies.append(FaultyProxy(host, port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def node_proxy(proxy_to, url: str) -> FaultyProxy:
    parts = urllib.parse.urlsplit(url)
    return proxy_to(parts.hostname, parts.port)


def seen(proxy: FaultyProxy, path: str) -> list[Seen]:
    with proxy._lock:
        return sorted((s for s in proxy.seen if s.path.startswith(path)), key=lambda s: s.at)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- on a web node that long-polls (it grants 5 s; it advises polling every 30 s) ------------


def test_a_command_queued_after_start_is_acked_within_about_a_second(
    web_nodes, agent, enqueue, run_agent, proxy_to
) -> None:
    proxy = node_proxy(proxy_to, web_nodes[0].url)
    running = run_agent(proxy.url)
    time.sleep(2.5)  # the first poll waits on the node

    command = enqueue(agent)
    wait_until(
        lambda: Command.objects.get(pk=command.pk).status == Status.SUCCEEDED, 15, "the result"
    )
    stopped_in = running.close()

    command.refresh_from_db()
    # A plain poller would ask again only after the advised 30 s: the poll that
    # took it was waiting on the node when it was queued.
    assert (command.delivered_at - command.created_at).total_seconds() < 2
    assert (command.started_at - command.created_at).total_seconds() < 2
    assert command.attempts == 1
    polls = seen(proxy, PENDING)
    assert "wait=30" in polls[0].path and "limit=1" in polls[0].path  # its very first poll
    assert all("wait=" in poll.path for poll in polls)
    assert stopped_in < 2  # a poll still waiting on the node does not hold the stop


def test_heartbeats_and_pushes_go_on_while_a_long_poll_waits(
    web_nodes, agent, run_agent, proxy_to
) -> None:
    proxy = node_proxy(proxy_to, web_nodes[0].url)
    running = run_agent(proxy.url, collect_interval=0.5, push_interval=1.0)
    time.sleep(4.0)

    answered_polls = seen(proxy, PENDING)  # recorded when answered
    heartbeats = seen(proxy, HEARTBEAT)
    pushes = seen(proxy, "/api/v1/analytics/device-metrics")
    running.close()

    assert answered_polls == []  # the first poll still waits its 5 s on the node
    assert len(heartbeats) >= 3 and len(pushes) >= 3
    assert running.agent.long_poll.on and running.agent.long_poll.advertised == 5


# --- on Django alone (pytest-django's live server): no advertisement ---------------------------


def test_without_an_advertisement_it_polls_plainly_at_the_advised_interval(
    live_server, run_agent, proxy_to, settings
) -> None:
    settings.COMMAND_POLL_IDLE_SECONDS = 1
    proxy = proxy_to(live_server.thread.host, live_server.thread.port)
    running = run_agent(proxy.url, poll_interval=30.0)
    time.sleep(4.5)
    running.close()

    polls = seen(proxy, PENDING)
    assert "wait=30" in polls[0].path  # it asked; the answer carried no advertisement
    assert all("wait" not in poll.path for poll in polls[1:])
    assert 3 <= len(polls) <= 6  # every advised second, not back to back
    plain = polls[1:]
    assert (plain[-1].at - plain[0].at) / (len(plain) - 1) >= 0.9
    assert not running.agent.long_poll.on


def test_a_poll_answer_advertising_long_polls_turns_them_back_on(
    live_server, run_agent, proxy_to, settings
) -> None:
    settings.COMMAND_POLL_IDLE_SECONDS = 1
    proxy = proxy_to(live_server.thread.host, live_server.thread.port)
    running = run_agent(proxy.url)
    time.sleep(2.2)  # polling plainly by now
    switched = time.monotonic()
    proxy.add_headers = lambda method, path: {LONG_POLL_HEADER: "5"} if PENDING in path else {}
    time.sleep(2.5)
    running.close()

    polls = seen(proxy, PENDING)
    assert any("wait" not in poll.path for poll in polls if poll.at < switched)
    after = [poll for poll in polls if poll.at > switched]
    first_long = next(i for i, poll in enumerate(after) if "wait=5" in poll.path)
    assert first_long <= 1  # the next poll after the advertised answer
    assert all("wait=5" in poll.path for poll in after[first_long:])  # min(30, advertised 5)
    # Django answers at once though advertised (a full server does too): no storm,
    # the next poll waits the advised second.
    assert len(after) <= 4
    assert running.agent.long_poll.on


def test_a_heartbeat_advertising_long_polls_makes_the_next_poll_a_long_one_at_once(
    live_server, run_agent, proxy_to
) -> None:
    proxy = proxy_to(live_server.thread.host, live_server.thread.port)
    running = run_agent(proxy.url, push_interval=1.0)  # the server advises polls every 30 s
    time.sleep(1.5)
    proxy.add_headers = lambda method, path: {LONG_POLL_HEADER: "5"} if HEARTBEAT in path else {}
    time.sleep(2.5)
    running.close()

    polls = seen(proxy, PENDING)
    assert "wait=30" in polls[0].path and len(polls) >= 2
    assert "wait=5" in polls[1].path
    heartbeat = max(h.at for h in seen(proxy, HEARTBEAT) if h.at < polls[1].at)
    assert polls[1].at - heartbeat < 1.0  # right after that heartbeat, not 30 s later


# --- the mode alone ------------------------------------------------------------------------


def test_the_wait_is_the_smaller_of_the_setting_and_the_advertisement() -> None:
    mode = LongPollMode(configured=30)
    assert mode.wait() == 30  # nothing heard yet: ask for the setting
    mode.heard(5.0, from_poll=True)
    assert mode.wait() == 5
    mode.heard(None, from_poll=False)  # a heartbeat without it changes nothing
    assert mode.wait() == 5
    mode.heard(None, from_poll=True)
    assert mode.wait() == 0
    assert mode.heard(300.0, from_poll=False) and mode.wait() == 30


def test_zero_means_plain_polls_whatever_the_server_says() -> None:
    mode = LongPollMode(configured=0)
    assert mode.wait() == 0
    assert not mode.heard(30.0, from_poll=True) and mode.wait() == 0


def test_an_early_empty_answer_was_not_held() -> None:
    empty, one = Pending([], 30.0), Pending([{"command_id": "c"}], 5.0)
    assert PollAnswer(wait=30, seconds=0.1, pending=empty).early_and_empty()
    assert not PollAnswer(wait=30, seconds=29.5, pending=empty).early_and_empty()
    assert not PollAnswer(wait=30, seconds=0.1, pending=one).early_and_empty()
