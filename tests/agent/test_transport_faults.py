"""How the agent reads the server's answers: what is transient (kept, retried
later, Retry-After honoured), what is permanent (a batch goes to quarantine),
what means the key is refused, and that no redirect is followed. The agent
talks to the live server through a proxy that answers on cue."""

import itertools
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from homepot_agent import cli
from homepot_agent.transport import ApiClient, Unreachable

from analytics.models import Sample
from commands.models import Command
from devices import services
from devices.models import Device
from tests.agent.faults import Canned, FaultyProxy, always
from tests.agent.helpers import Clock, calls, poll_until_idle, queue, settle, start_agent

pytestmark = pytest.mark.django_db(transaction=True)

TRANSIENT = [429, 500, 502, 503, 504]


@pytest.fixture
def proxy(live_server):
    proxy = FaultyProxy(live_server.thread.host, live_server.thread.port)
    yield proxy
    proxy.close()


def stored(metric: str = "seq") -> list[float]:
    return sorted(
        Sample.objects.filter(device__public_id="pi-e2e", metric__name=metric).values_list(
            "value", flat=True
        )
    )


def agent_with_samples(registered, proxy, *values: float, **changes):
    agent = start_agent(registered, Clock(), server_url=proxy.url, **changes)
    ticks = itertools.count(time.time() - 600)  # one second apart: distinct samples
    agent.wall_clock = lambda: next(ticks)
    samples = itertools.chain(values, itertools.count(100))  # then 100, 101, ...
    agent.collect = lambda: {"seq": float(next(samples))}
    for _ in values:
        agent.collect_once()
    return agent


@pytest.mark.parametrize("status", TRANSIENT)
def test_a_transient_answer_keeps_the_batch_in_the_spool(registered, proxy, status):
    agent = agent_with_samples(registered, proxy, 1, 2)
    proxy.answer = always(Canned(status), "device-metrics")

    assert not agent.push_once()

    assert agent.spool.depth() == 2
    assert agent.spool.quarantined() == 0
    proxy.answer = always(None)
    assert agent.push_once()
    assert stored() == [1, 2]
    assert agent.spool.depth() == 0


def test_a_connection_error_keeps_the_batch_in_the_spool(registered, proxy):
    agent = agent_with_samples(registered, proxy, 1)
    proxy.close()

    assert not agent.push_once()

    assert agent.spool.depth() == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_result_answered_busy_stays_owed(registered, proxy, operator, systemctl_log, status):
    command = queue(operator, "ping")
    agent = start_agent(registered, Clock(), server_url=proxy.url)
    proxy.answer = always(Canned(status, {"Retry-After": "5"}), "/status")

    agent.poll_once()
    settle(agent)
    agent.poll_once()

    assert [cid for cid, _ in agent.ledger.unsent()] == [str(command.public_id)]
    assert status in proxy.statuses("/status")
    proxy.answer = always(None)
    poll_until_idle(agent)
    command.refresh_from_db()
    assert command.status == "succeeded"
    assert agent.ledger.unsent() == []


def test_a_result_answered_409_is_done(registered, operator, systemctl_log):
    command = queue(operator, "ping")
    agent = start_agent(registered, Clock())
    poll_until_idle(agent)
    command_id = str(command.public_id)
    # The same final result again: the server answers 409 (already terminal).
    agent.ledger.record_result(command_id, agent.ledger.report_of(command_id))

    assert agent.poll_once()

    assert agent.ledger.unsent() == []


def test_retry_after_in_seconds_is_honoured(registered, proxy):
    clock = Clock()
    agent = agent_with_samples(registered, proxy, 1)
    agent.clock = clock
    proxy.answer = always(Canned(429, {"Retry-After": "45"}))
    agent.pushing.due = agent.polling.due = clock.now

    agent.step()

    assert agent.pushing.due == clock.now + 45
    assert agent.polling.due == clock.now + 45


def test_retry_after_beyond_the_cap_waits_only_the_cap(registered, proxy):
    clock = Clock()
    agent = agent_with_samples(registered, proxy, 1)
    agent.clock = clock
    proxy.answer = always(Canned(503, {"Retry-After": "3600"}))
    agent.pushing.due = clock.now

    agent.step()

    assert agent.pushing.due == clock.now + agent.config.max_backoff == clock.now + 60


def test_retry_after_as_an_http_date():
    from homepot_agent.transport import retry_after_seconds

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=40), usegmt=True)

    assert retry_after_seconds(later, now=now.timestamp()) == pytest.approx(40)
    assert retry_after_seconds("12", now=now.timestamp()) == 12
    assert retry_after_seconds("soon", now=now.timestamp()) is None
    assert retry_after_seconds("-3", now=now.timestamp()) is None
    assert retry_after_seconds(None, now=now.timestamp()) is None


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_batch_the_server_will_never_take_goes_to_quarantine(registered, proxy, status):
    agent = agent_with_samples(registered, proxy, 1)
    proxy.answer = always(Canned(status, body=b'{"detail": "no", "code": "bad"}'), "device-metrics")

    assert agent.push_once()  # the rest keeps flowing: nothing else was waiting

    assert (agent.spool.depth(), agent.spool.quarantined()) == (0, 1)
    proxy.answer = always(None)
    agent.collect = lambda: {"seq": 2.0}
    agent.collect_once()
    assert agent.push_once()
    assert stored() == [2]
    assert agent.spool.quarantined() == 1  # kept on disk, never dropped silently


def test_a_batch_too_large_for_the_server_is_split_before_anything_is_quarantined(
    registered, proxy
):
    agent = agent_with_samples(registered, proxy, 1, 2, 3, 4)

    def at_most_two_samples(method, path, body):
        if "device-metrics" in path and len(json.loads(body)["samples"]) > 2:
            return Canned(413)
        return None

    proxy.answer = at_most_two_samples

    assert agent.push_once()

    assert stored() == [1, 2, 3, 4]
    assert (agent.spool.depth(), agent.spool.quarantined()) == (0, 0)
    assert proxy.statuses("device-metrics") == [413, 201, 201]


def test_a_batch_answered_500_again_and_again_goes_to_quarantine(registered, proxy):
    agent = agent_with_samples(registered, proxy, 1)
    proxy.answer = always(Canned(500), "device-metrics")  # the heartbeat still works

    for _ in range(agent.POISON_500_LIMIT - 1):
        assert not agent.push_once()
        assert agent.spool.depth() == 1
    agent.push_once()

    assert (agent.spool.depth(), agent.spool.quarantined()) == (0, 1)


def test_a_server_answering_500_to_everything_quarantines_nothing(registered, proxy):
    agent = agent_with_samples(registered, proxy, 1)
    proxy.answer = always(Canned(500))

    for _ in range(3 * agent.POISON_500_LIMIT):
        assert not agent.push_once()

    assert (agent.spool.depth(), agent.spool.quarantined()) == (1, 0)


def test_a_refused_key_stops_pushing_keeps_the_data_and_says_so(
    registered, proxy, operator, tmp_path, caplog, capsys
):
    agent = agent_with_samples(registered, proxy, 1, 2)
    services.device_keys_revoke(device=Device.objects.get(public_id="pi-e2e"), actor=operator)
    caplog.set_level(logging.ERROR, logger="homepot_agent")

    assert not agent.push_once()
    assert not agent.poll_once()
    agent.collect_once()
    assert not agent.push_once()

    assert agent.spool.depth() == 3
    assert proxy.statuses("device-metrics") == [401]  # tried once, then only the key is checked
    assert proxy.statuses("pending") == []
    assert "key" in caplog.text and "401" in caplog.text
    agent.write_status(tmp_path / "state" / "status.json")
    capsys.readouterr()
    cli.main(["--config", str(registered), "status"])
    status = json.loads(capsys.readouterr().out)
    assert status["key_refused"].startswith("401")
    assert status["spool_depth"] == 3


def test_a_redirect_is_not_followed_with_the_key(registered, proxy, live_server):
    elsewhere = FaultyProxy(live_server.thread.host, live_server.thread.port)
    elsewhere.answer = always(Canned(201, body=b"{}"))
    agent = agent_with_samples(registered, proxy, 1)
    proxy.answer = lambda method, path, body: Canned(307, {"Location": elsewhere.url + path})

    assert not agent.push_once()
    assert not agent.poll_once()

    assert elsewhere.seen == []
    assert "redirect" in agent.status.last_error
    assert agent.spool.depth() == 1
    elsewhere.close()


def test_registration_does_not_follow_a_redirect_with_the_token(
    tmp_path, proxy, live_server, site, capsys
):
    elsewhere = FaultyProxy(live_server.thread.host, live_server.thread.port)
    elsewhere.answer = always(Canned(201, body=b'{"api_key": "x"}'))
    proxy.answer = lambda method, path, body: Canned(308, {"Location": elsewhere.url + path})
    argv = [
        *("--config", str(tmp_path / "a.toml"), "register", "--server", proxy.url),
        *("--site", "lab-1", "--token", "het_secret", "--device-id", "x"),
        *("--state-dir", str(tmp_path / "state")),
    ]

    assert cli.main(argv) == cli.EXIT_REFUSED

    assert elsewhere.seen == []
    assert "redirect" in capsys.readouterr().err
    elsewhere.close()


def test_a_command_whose_ack_is_refused_does_not_run_and_may_come_again(
    registered, proxy, operator
):
    """An ack answered 409 (canceled or re-queued meanwhile): not run, and not
    remembered as taken on, so a redelivery runs it."""
    command = queue(operator, "ping")
    agent = start_agent(registered, Clock(), server_url=proxy.url)
    proxy.answer = always(Canned(409, body=b'{"detail": "canceled", "code": "canceled"}'), "/ack")

    agent.poll_once()
    settle(agent)

    assert agent.ledger.report_of(str(command.public_id)) is None
    assert Command.objects.get(pk=command.pk).status == "delivered"
    assert agent.ledger.claim(str(command.public_id))  # the claim was released


def test_quarantined_samples_are_shown_and_can_be_sent_again(registered, proxy, tmp_path, capsys):
    agent = agent_with_samples(registered, proxy, 1)
    proxy.answer = always(Canned(422, body=b'{"detail": "unknown metric", "code": "x"}'))
    agent.push_once()
    agent.write_status(tmp_path / "state" / "status.json")
    capsys.readouterr()

    cli.main(["--config", str(registered), "status"])
    status = json.loads(capsys.readouterr().out)
    assert (status["quarantined_samples"], status["quarantined_batches"]) == (1, 1)
    assert "422" in status["last_quarantined"]["reason"]

    proxy.answer = always(None)  # the server was fixed
    assert cli.main(["--config", str(registered), "quarantine", "--requeue"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["requeued_samples"] == 1
    assert agent.push_once()
    assert stored() == [1]
    assert (agent.spool.depth(), agent.spool.quarantined()) == (0, 0)


def test_an_ack_whose_answer_was_lost_is_sent_again_and_the_command_runs_once(
    registered, proxy, operator, systemctl_log
):
    command = queue(operator, "restart_service", {"service": "nginx"})
    agent = start_agent(registered, Clock(), server_url=proxy.url)
    proxy.answer = always(Canned(504, forward_first=True), "/ack")  # taken; answer lost

    assert not agent.poll_once()

    assert Command.objects.get(pk=command.pk).status == "in_progress"
    assert calls(systemctl_log) == []  # not started without a confirmed ack
    proxy.answer = always(None)
    poll_until_idle(agent)
    command.refresh_from_db()
    assert command.status == "succeeded"
    assert calls(systemctl_log) == ["restart -- nginx"]


class DroppingServer:
    """A raw HTTP server whose first `drops` connections are closed unanswered
    once the request is read, as a server closing an idle kept-alive connection
    does; the others get an empty command list."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                conn.recv(65536)
                if self.connections > self.drops:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\n[]"
                    )

    def close(self) -> None:
        self.listener.close()


def test_a_request_dropped_unanswered_goes_once_more_on_a_fresh_connection() -> None:
    server = DroppingServer(drops=1)
    try:
        assert ApiClient(server.url, device_id="d", api_key="k").pending(limit=1).commands == []
    finally:
        server.close()
    assert server.connections == 2


def test_a_server_that_keeps_dropping_is_unreachable_after_one_more_try() -> None:
    server = DroppingServer(drops=5)
    try:
        with pytest.raises(Unreachable):
            ApiClient(server.url, device_id="d", api_key="k").ack("d", "c")
    finally:
        server.close()
    assert server.connections == 2


def test_registering_is_never_sent_twice() -> None:
    server = DroppingServer(drops=1)
    try:
        with pytest.raises(Unreachable):
            ApiClient(server.url).register(site_id="s", token="t", device={"device_id": "d"})
    finally:
        server.close()
    assert server.connections == 1
