"""Real web nodes for tests: gunicorn with HOMEPOT's uvicorn worker, as production runs.

Each node is its own server process on its own port, sharing the test
database (PostgreSQL) and Redis with the test, so a test can check that
several nodes behave as one.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.db import connection

from homepot.longpoll import ADVERT_HEADER
from tests.test_ssh_runner import worker_stop


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class WebNode:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            worker_stop(self.process)  # the same SIGTERM, then SIGKILL, of its process group


def node_environment(**extra: str) -> dict[str, str]:
    """The test's environment, pointed at the test database."""
    database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    test_database = database._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    return os.environ | {"DATABASE_URL": test_database, "DEBUG": "true"} | extra


def node_start(log: Path, **extra: str) -> WebNode:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "homepot.asgi:application"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--worker-class", "homepot.web_worker.Worker", "--graceful-timeout", "5"]
    command += ["--keep-alive", "75"]  # as the image runs it
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=node_environment(**extra),
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    node = WebNode(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_long_polling(node)
    except BaseException:
        node.stop()  # never leave a node running behind a failed start
        raise
    return node


def _wait_until_long_polling(node: WebNode, timeout: float = 60.0) -> None:
    """Until the node answers and advertises long polls (its Redis subscription is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.process.poll() is None, node.log_tail()
        try:
            # Unauthenticated: 401, but through the router, which advertises.
            response = requests.get(f"{node.url}/api/v1/devices/pending", timeout=10)
            if ADVERT_HEADER in response.headers:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"web node did not start long-polling:\n{node.log_tail()}")


@pytest.fixture(scope="module")
def web_nodes(django_db_setup, tmp_path_factory) -> Iterator[list[WebNode]]:  # noqa: ANN001
    """Two web nodes on the test database and one Redis, for a module's tests
    (which use transactional_db, so the nodes see what they write)."""
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("web nodes need the test database on PostgreSQL and Redis")
    logs = tmp_path_factory.mktemp("web-nodes")
    nodes: list[WebNode] = []
    try:
        for name in ("a", "b"):
            nodes.append(node_start(logs / f"node-{name}.log", LONG_POLL_MAX_SECONDS="5"))
        yield nodes
    finally:
        for node in nodes:
            node.stop()
