"""The browser suite: pytest-playwright driving Debian's Chromium against a live server.

`playwright install` downloads a browser build of its own, which an offline lab
network (and CI here) cannot do, so the suite launches /usr/bin/chromium
(`apt-get install chromium`; .ci/run installs it when missing).

Every page a test opens is watched: a request to any host but the live server,
or an error in the console (a Content-Security-Policy violation is one), fails
the test when it ends.
"""

import os
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from homepot_agent.config import AgentConfig
from homepot_agent.executor import Executor
from homepot_agent.transport import ApiClient, Unreachable
from playwright.sync_api import ConsoleMessage, Page, Request

from tests.conftest import Agent
from tests.test_ssh_runner import worker_start, worker_stop

# pytest-playwright's sync API runs an event loop in the test's thread; Django
# would then refuse the ORM calls that fixtures and tests make in that thread
# (SynchronousOnlyOperation) although nothing here is async.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("HOMEPOT_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1440, "height": 900}
# Assertions that wait for the page (expect) give up after this.
EXPECT_TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if shutil.which(CHROMIUM) is None:
        # With CI set a missing browser fails the suite instead of skipping it.
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    args = list(browser_type_launch_args.get("args", []))
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": args}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict, live_server) -> dict:  # noqa: ANN001
    return {**browser_context_args, "base_url": live_server.url, "viewport": VIEWPORT}


@dataclass
class PageWatch:
    """What a page asked for and complained about while a test ran."""

    server: str  # scheme://host:port of the live server
    offsite: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        parts = urllib.parse.urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.server:
            self.offsite.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium asks for /favicon.ico on its own, whatever the page links; the
        # admin has none yet. Not the page's doing, so not counted.
        if message.location.get("url", "").endswith("/favicon.ico"):
            return
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def on_page_error(self, error: Exception) -> None:
        self.console_errors.append(f"uncaught: {error}")

    def assert_clean(self) -> None:
        assert self.offsite == [], f"requests to other hosts: {self.offsite}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


@pytest.fixture
def page_watch(page: Page, live_server) -> Iterator[PageWatch]:  # noqa: ANN001
    parts = urllib.parse.urlsplit(live_server.url)
    watch = PageWatch(server=f"{parts.scheme}://{parts.netloc}")
    page.on("request", watch.on_request)
    page.on("console", watch.on_console)
    page.on("pageerror", watch.on_page_error)
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield watch
    watch.assert_clean()


@pytest.fixture
def watched_page(page: Page, page_watch: PageWatch) -> Page:
    """The test's page, watched for requests to other hosts and console errors."""
    return page


def admin_login(page: Page, user: User, next_path: str = "/admin/") -> Page:
    """Log in through the admin's own form, as a person does (tests/conftest.py's passwords)."""
    page.goto("/admin/login/?" + urllib.parse.urlencode({"next": next_path}))
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("input[type=submit]")
    page.wait_for_url("**" + next_path)
    return page


@pytest.fixture
def operator_page(watched_page: Page, operator: User) -> Page:
    return admin_login(watched_page, operator)


@pytest.fixture
def viewer_page(watched_page: Page, viewer: User) -> Page:
    return admin_login(watched_page, viewer)


def needs_worker_services() -> None:
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("a worker process needs the test database on PostgreSQL and a Redis broker")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Starts a real Celery worker on the test database, with settings given as
    environment variables (DEVICE_OFFLINE_GRACE_SECONDS="0"); returns its log file."""
    needs_worker_services()
    workers: list[subprocess.Popen] = []

    def start(**settings_env: str) -> Path:
        database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
        test_database = database._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
        env = os.environ | settings_env | {"DATABASE_URL": test_database}
        log = tmp_path / f"worker-{len(workers)}.log"
        workers.append(worker_start(env, log))
        return log

    yield start
    for worker in workers:
        worker_stop(worker)


# Polls in a row the device loop may see refused before it counts as a failure.
MAX_REFUSED_POLLS = 5


class DeviceLoop:
    """The device's side, as the agent runs it: poll /pending, ack, execute with the
    agent's Executor, report. A thread, polling every 0.2 s until stopped."""

    def __init__(self, base_url: str, agent: Agent) -> None:
        device_id = agent.device.public_id
        self.client = ApiClient(base_url, device_id=device_id, api_key=agent.api_key)
        self.device_id = device_id
        self.executor = Executor(AgentConfig())
        self.stopped = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        refused = 0
        try:
            while not self.stopped.wait(0.2):
                try:
                    commands = self.client.pending().commands
                except Unreachable:
                    # The agent polls again after a 503: on SQLite, live_server's
                    # threads share one in-memory connection, and a poll that meets
                    # the test's own write in it is answered 503 (the queue is kept).
                    refused += 1
                    if refused > MAX_REFUSED_POLLS:
                        raise
                    continue
                refused = 0
                for command in commands:
                    self.handle(command)
        except BaseException as failure:  # the test reports it; a thread would only print
            self.failure = failure

    def handle(self, command: dict) -> None:
        command_id = str(command["command_id"])
        self.client.ack(self.device_id, command_id)
        outcome = self.executor.execute(command)
        self.client.report(command_id, outcome.as_report(timezone.now().isoformat()))


@pytest.fixture
def device_loop(live_server, agent: Agent) -> Iterator[DeviceLoop]:  # noqa: ANN001
    loop = DeviceLoop(live_server.url, agent)
    loop.thread.start()
    yield loop
    loop.stopped.set()
    loop.thread.join(timeout=10)
    assert loop.failure is None, f"the device loop failed: {loop.failure!r}"
