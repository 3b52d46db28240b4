"""Concurrent polls of one device over real HTTP on PostgreSQL: no command is
ever delivered twice."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection, connections

from commands.models import Command
from commands.services import CommandSpec, commands_enqueue_bulk
from devices.models import Device

COMMANDS = 120
POLLERS = 8

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs concurrent writers: PostgreSQL (CI sets DATABASE_URL)",
)


@pytest.mark.django_db(transaction=True)
def test_concurrent_polls_never_deliver_a_command_twice(
    live_server, make_agent, operator, settings
):
    settings.COMMAND_DELIVERY_BATCH = 3
    agent = make_agent("pi-busy")
    spec = CommandSpec.validated(command_type="ping", payload={})
    for _ in range(COMMANDS):
        commands_enqueue_bulk(
            actor=operator, devices=Device.objects.filter(pk=agent.device.pk), spec=spec, target={}
        )
    url = f"{live_server.url}/api/v1/devices/pending"

    def poll_until_nothing_is_queued() -> list[str]:
        got: list[str] = []
        try:
            with requests.Session() as session:
                session.headers.update({"X-Device-ID": "pi-busy", "X-API-Key": agent.api_key})
                while Command.objects.filter(status="queued").exists():
                    got += [c["command_id"] for c in session.get(url, timeout=30).json()]
        finally:
            connections.close_all()  # this thread's connection
        return got

    with ThreadPoolExecutor(POLLERS) as pool:
        results = list(pool.map(lambda _: poll_until_nothing_is_queued(), range(POLLERS)))

    delivered = Counter(command_id for result in results for command_id in result)
    assert [cid for cid, n in delivered.items() if n > 1] == []
    assert len(delivered) == COMMANDS
    assert Command.objects.filter(status="delivered").count() == COMMANDS
    # more than one poller got work: the polls really did overlap
    assert sum(1 for result in results if result) > 1
