"""Long polls on real web nodes (gunicorn + HOMEPOT's uvicorn worker, PostgreSQL, Redis).

Two nodes share the database and Redis: what is queued or revoked through
one is seen by an agent waiting on the other. The nodes grant at most 5 s
(LONG_POLL_MAX_SECONDS=5) so the waiting tests stay short.
"""

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from django.db import connection

from commands.models import Command, Status
from homepot.longpoll import (
    ADVERT_HEADER,
    MARKER_HEADER,
    MODE_HEADER,
    SUBSCRIBER_NAME,
    WAKE_HEADER,
    WakeHub,
    _wait_for_news,
)
from tests.conftest import Agent
from tests.web_nodes import WebNode, node_start

pytestmark = pytest.mark.django_db(transaction=True)

PENDING = "/api/v1/devices/pending"


def poll(node: WebNode, agent: Agent, query: str = "", timeout: float = 30) -> requests.Response:
    headers = {"X-Device-ID": agent.device.public_id, "X-API-Key": agent.api_key}
    return requests.get(f"{node.url}{PENDING}{query}", headers=headers, timeout=timeout)


def queue_through(node: WebNode, token: str, agent: Agent) -> str:
    response = requests.post(
        f"{node.url}/api/v1/devices/{agent.device.public_id}/commands",
        json={"command_type": "ping"},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["command_id"]


def in_background(call: Callable[[], requests.Response]) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        started = time.monotonic()
        result["response"] = call()
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_plain_poll_is_answered_at_once_and_advertises_long_polls(web_nodes, agent) -> None:
    started = time.monotonic()
    response = poll(web_nodes[0], agent)
    assert response.status_code == 200 and response.json() == []
    assert response.headers[ADVERT_HEADER] == "5"
    assert response.headers["X-Poll-Interval"] == "30"
    assert time.monotonic() - started < 4  # not held for the 5 s a long poll may wait

    heartbeat = requests.post(
        f"{web_nodes[0].url}/api/v1/devices/heartbeat",
        json={},
        headers={"X-Device-ID": agent.device.public_id, "X-API-Key": agent.api_key},
        timeout=10,
    )
    assert heartbeat.status_code == 200, heartbeat.text
    assert heartbeat.headers[ADVERT_HEADER] == "5"


def test_a_long_poll_with_nothing_queued_answers_empty_after_its_wait(web_nodes, agent) -> None:
    started = time.monotonic()
    response = poll(web_nodes[0], agent, "?wait=2")
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json() == []
    assert 1.9 <= elapsed < 4.5
    for internal in (WAKE_HEADER, MARKER_HEADER, MODE_HEADER):
        assert internal not in response.headers


def test_a_longer_wait_is_capped_not_refused(web_nodes, agent) -> None:
    started = time.monotonic()
    response = poll(web_nodes[0], agent, "?wait=3600")
    assert response.status_code == 200 and response.json() == []
    assert 4.9 <= time.monotonic() - started < 9  # the node's cap: 5 s


@pytest.mark.parametrize("wait", ["-1", "abc", "1.5", "99999999"])
def test_a_malformed_wait_is_a_json_400(web_nodes, agent, wait) -> None:
    response = poll(web_nodes[0], agent, f"?wait={wait}")
    assert response.status_code == 400
    assert "wait" in response.json()


def test_a_command_queued_on_one_node_wakes_the_agent_waiting_on_the_other(
    web_nodes, agent, operator, api_token
) -> None:
    token = api_token(operator)
    thread, result = in_background(lambda: poll(web_nodes[1], agent, "?wait=5"))
    time.sleep(1.0)  # the poll is waiting on node b
    command_id = queue_through(web_nodes[0], token, agent)
    thread.join()

    response = result["response"]
    assert response.status_code == 200
    assert [c["command_id"] for c in response.json()] == [command_id]
    assert result["seconds"] < 4  # woken, not answered at the 5 s deadline
    assert Command.objects.get(public_id=command_id).status == Status.DELIVERED


def test_a_command_already_queued_is_answered_without_waiting(web_nodes, agent, enqueue) -> None:
    command = enqueue(agent)
    started = time.monotonic()
    response = poll(web_nodes[0], agent, "?wait=5")
    assert [c["command_id"] for c in response.json()] == [str(command.public_id)]
    assert time.monotonic() - started < 4


def test_two_waiting_polls_of_one_device_get_a_command_once(web_nodes, agent, enqueue) -> None:
    with ThreadPoolExecutor(2) as pool:
        polls = [pool.submit(poll, node, agent, "?wait=4") for node in web_nodes]
        time.sleep(1.0)
        command = enqueue(agent)
        answers = [future.result().json() for future in polls]

    delivered = [c["command_id"] for answer in answers for c in answer]
    assert delivered == [str(command.public_id)]
    assert Command.objects.get(pk=command.pk).attempts == 1


def test_a_key_revoked_on_one_node_is_refused_by_the_other_at_once(
    web_nodes, agent, operator, api_token
) -> None:
    token = api_token(operator)
    assert poll(web_nodes[1], agent).status_code == 200  # node b now remembers the key
    thread, result = in_background(lambda: poll(web_nodes[1], agent, "?wait=5"))
    time.sleep(1.0)

    revoked = requests.post(
        f"{web_nodes[0].url}/api/v1/devices/{agent.device.public_id}/revoke",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    thread.join()

    # The poll waiting on b is woken by the revocation and refused.
    assert result["response"].status_code == 401
    assert result["seconds"] < 4
    assert poll(web_nodes[1], agent).status_code == 401
    assert poll(web_nodes[0], agent).status_code == 401


def test_a_poll_whose_agent_hung_up_claims_nothing(web_nodes, agent, enqueue) -> None:
    with pytest.raises(requests.ReadTimeout):
        poll(web_nodes[0], agent, "?wait=5", timeout=1.0)
    time.sleep(0.5)  # the node notices the closed connection
    command = enqueue(agent)
    time.sleep(1.0)

    assert Command.objects.get(pk=command.pk).status == Status.QUEUED
    response = poll(web_nodes[0], agent)
    assert [c["command_id"] for c in response.json()] == [str(command.public_id)]


def test_internal_headers_sent_by_a_client_are_ignored(web_nodes, agent) -> None:
    headers = {
        "X-Device-ID": agent.device.public_id,
        "X-API-Key": agent.api_key,
        MODE_HEADER: "recheck",
    }
    response = requests.get(f"{web_nodes[0].url}{PENDING}?wait=0", headers=headers, timeout=10)
    assert response.status_code == 200
    assert WAKE_HEADER not in response.headers and MARKER_HEADER not in response.headers


def test_without_the_asgi_router_wait_is_accepted_and_answered_at_once(client, agent) -> None:
    # Django alone (runserver, or the WSGI entry point): no long poll, no advertisement.
    response = client.get(f"{PENDING}?wait=30", **agent.headers)
    assert response.status_code == 200 and response.json() == []
    assert ADVERT_HEADER not in response.headers
    assert WAKE_HEADER not in response.headers


def kill_wake_subscriptions() -> int:
    """Cut the web nodes' Redis subscriptions, as a Redis restart or a network blip would."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    database = client.connection_pool.connection_kwargs.get("db", 0)
    killed = 0
    for entry in client.client_list():
        if entry["name"] == SUBSCRIBER_NAME and int(entry["db"]) == database:
            killed += client.client_kill_filter(_id=entry["id"])
    return killed


def test_a_command_queued_while_the_subscription_is_down_still_wakes_the_poll(
    web_nodes, agent, operator, api_token
) -> None:
    token = api_token(operator)
    thread, result = in_background(lambda: poll(web_nodes[0], agent, "?wait=5"))
    time.sleep(1.0)
    assert kill_wake_subscriptions() >= 1
    # Published while node a reconnects: the message itself is lost.
    command_id = queue_through(web_nodes[1], token, agent)
    thread.join()

    assert [c["command_id"] for c in result["response"].json()] == [command_id]
    assert result["seconds"] < 4.5
    # The node subscribes again and advertises long polls again.
    deadline = time.monotonic() + 10
    while ADVERT_HEADER not in poll(web_nodes[0], agent).headers:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_beyond_its_waiter_limit_a_node_answers_polls_at_once(web_nodes, agent, tmp_path) -> None:
    node = node_start(tmp_path / "full-node.log", LONG_POLL_MAX_WAITERS="0")
    try:
        started = time.monotonic()
        response = poll(node, agent, "?wait=5")
        assert response.status_code == 200 and response.json() == []
        assert time.monotonic() - started < 4
    finally:
        node.stop()


def test_past_its_queue_limit_a_node_sheds_requests_with_a_json_503(agent, tmp_path) -> None:
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("web nodes need the test database on PostgreSQL and Redis")
    node = node_start(tmp_path / "shedding-node.log", WEB_MAX_QUEUED="0")
    try:
        response = poll(node, agent, "?wait=5")
        assert response.status_code == 503
        assert response.json()["code"] == "server_busy"
        assert 1 <= int(response.headers["Retry-After"]) <= 5
        # Liveness is still answered.
        assert requests.get(f"{node.url}/health", timeout=10).status_code == 200
    finally:
        node.stop()


def test_a_poll_that_cannot_read_its_marker_waits_instead_of_spinning() -> None:
    with socket.socket() as probe:  # a port nobody listens on: every read fails
        probe.bind(("127.0.0.1", 0))
        hub = WakeHub(f"redis://127.0.0.1:{probe.getsockname()[1]}/0")
        reads = 0
        real_read = hub.marker_set

        async def counted_read(key: str) -> bool | None:
            nonlocal reads
            reads += 1
            return await real_read(key)

        hub.marker_set = counted_read

        async def wait() -> str:
            loop = asyncio.get_running_loop()
            never = loop.create_task(asyncio.Event().wait())
            try:
                return await _wait_for_news(
                    hub, asyncio.Event(), "cmdq:1", never, loop.time() + 2.5
                )
            finally:
                never.cancel()

        # In a thread of its own: the browser suite leaves an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, wait()).result() == "no news"
    assert 2 <= reads <= 5  # about one a second, not a busy loop
