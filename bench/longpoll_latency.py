"""Queue -> agent ack latency with long polls: real agents on one ASGI web node.

Target (issue 15 item 1): p99 of queue -> ack under 1 s.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_bench_longpoll``), flushes a dedicated Redis DB (default ``/14``),
   migrates (production settings: DEBUG off);
2. creates a site, ``--agents`` devices (``devices.services.device_register``)
   and an operator with an API token, straight into the database;
3. starts one web node as production runs it: gunicorn, ``homepot.asgi``,
   ``--worker-class homepot.web_worker.Worker``, one worker, with Redis;
4. runs ``--agents`` real agents (the agent library's run loop, as
   ``homepot-agent run`` builds it, each on a thread of this process; commands
   are counted as the executor runs them) and lets them settle into long polls;
5. queues ``--commands`` pings through the operator API
   (``POST /api/v1/devices/<id>/commands``), each for a random device at a
   random moment within ``--spread`` seconds, waits until every one is final,
   and prints queue -> ack (the server's ``created_at`` -> ``started_at``,
   set by the ack) and queue -> delivery p50/p95/p99/max, how many were acked,
   lost (not final after ``--settle`` s) or run twice.

It prints figures and PASS/FAIL against the target; it asserts nothing. The
agents and this script share the machine with the server: on a busy machine
the figures are noisy. Needs PostgreSQL (trust auth) and Redis running. From
the repository root:

    .venv/bin/python bench/longpoll_latency.py
    .venv/bin/python bench/longpoll_latency.py --agents 20 --commands 200 --spread 60
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from auth_bench import PYTHON, REPO_ROOT, flush_redis, free_port, recreate_database, run_step

TARGET_P99_SECONDS = 1.0
SITE_ID = "bench-longpoll"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--spread", type=float, default=60.0, help="queueing window, seconds")
    parser.add_argument("--settle", type=float, default=60.0, help="wait for results, seconds")
    parser.add_argument("--long-poll-max", type=int, default=30, help="LONG_POLL_MAX_SECONDS")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/homepot_bench_longpoll"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    return parser.parse_args()


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LONG_POLL_MAX_SECONDS": str(args.long_poll_max),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


# --- the fleet in the database ---------------------------------------------------------------


def seed(count: int) -> tuple[dict[str, str], str]:
    """A site, `count` devices ({device_id: api_key}) and an operator's API token."""
    from django.contrib.auth.models import Group, User

    from devices.services import device_register, site_create
    from homepot.api_tokens import api_token_issue
    from homepot.roles import OPERATOR

    site_create(actor=None, public_id=SITE_ID, name="Long-poll benchmark")
    keys = {}
    for n in range(count):
        device_id = f"lp-{n:03d}"
        _, issued = device_register(
            site_public_id=SITE_ID,
            actor=None,
            enrollment_token=None,
            public_id=device_id,
            name=device_id,
            device_type="raspberry_pi",
        )
        keys[device_id] = issued.api_key
    operator = User.objects.create_user("bench-operator", is_staff=True)
    operator.groups.set([Group.objects.get(name=OPERATOR)])
    return keys, api_token_issue(user=operator, expires_in=None)


# --- the web node ------------------------------------------------------------------------------


class WebNode:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        command = [
            PYTHON, "-m", "gunicorn", "homepot.asgi:application",
            "--bind", self.url.removeprefix("http://"), "--workers", "1",
            "--worker-class", "homepot.web_worker.Worker", "--log-level", "warning",
            "--graceful-timeout", "5",  # the agents' last long polls need not be answered
        ]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, start_new_session=True
            )
        self.log = log
        self._wait_until_long_polling()

    def _wait_until_long_polling(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                answer = requests.get(f"{self.url}/api/v1/devices/pending", timeout=5)
                if "X-Long-Poll-Max" in answer.headers:
                    return
            except requests.RequestException:  # not up yet, or still booting
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"the web node did not start long-polling:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# --- the agents --------------------------------------------------------------------------------


class Fleet:
    """Real agents, each running its loop on a thread; counts every command run."""

    def __init__(self, server_url: str, keys: dict[str, str], state: Path) -> None:
        from homepot_agent.config import AgentConfig
        from homepot_agent.runtime import build_agent

        self.runs: Counter[str] = Counter()
        self.ack_sent: dict[str, float] = {}  # command id -> wall clock as the agent sent the ack
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.agents, self.threads = [], []
        for device_id, api_key in keys.items():
            config = AgentConfig(
                server_url=server_url,
                device_id=device_id,
                site_id=SITE_ID,
                state_dir=state / device_id,
                enabled_collectors=["agent"],
            )
            agent = build_agent(config, api_key=api_key)
            agent.executor.execute = self._counted(agent.executor.execute)
            agent.client.ack = self._timed(agent.client.ack)
            self.agents.append(agent)
            thread = threading.Thread(target=agent.run, args=(self.stop,), daemon=True)
            self.threads.append(thread)

    def _counted(self, execute: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
        def run(command: dict[str, Any]) -> Any:
            with self._lock:
                self.runs[str(command["command_id"])] += 1
            return execute(command)

        return run

    def _timed(self, ack: Callable[[str, str], None]) -> Callable[[str, str], None]:
        def send(device_id: str, command_id: str) -> None:
            self.ack_sent[command_id] = time.time()
            ack(device_id, command_id)

        return send

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for agent in self.agents:
            agent.wake()
        for thread in self.threads:
            thread.join(timeout=10)

    def long_polling(self) -> int:
        return sum(agent.long_poll.on for agent in self.agents)


# --- queueing and results ----------------------------------------------------------------------


def queue_commands(
    url: str, token: str, devices: list[str], count: int, spread: float, rng: random.Random
) -> list[str]:
    """`count` pings at random moments within `spread` s, each for a random device."""
    moments = sorted(rng.uniform(0, spread) for _ in range(count))
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    started, queued = time.monotonic(), []
    for moment in moments:
        time.sleep(max(0.0, started + moment - time.monotonic()))
        device_id = rng.choice(devices)
        answer = session.post(
            f"{url}/api/v1/devices/{device_id}/commands", json={"command_type": "ping"}, timeout=30
        )
        if answer.status_code != 201:
            sys.exit(f"queueing failed: HTTP {answer.status_code} {answer.text[:300]}")
        queued.append(answer.json()["command_id"])
    return queued


def wait_until_final(command_ids: list[str], seconds: float) -> None:
    from commands.models import Command

    deadline = time.monotonic() + seconds
    finals = ("succeeded", "failed", "rejected", "canceled", "expired")
    while time.monotonic() < deadline:
        open_ = Command.objects.filter(public_id__in=command_ids).exclude(status__in=finals)
        if not open_.exists():
            return
        time.sleep(0.5)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def describe(label: str, seconds: list[float]) -> str:
    if not seconds:
        return f"  {label}: none"
    points = ", ".join(
        f"{name} {percentile(seconds, q) * 1000:.0f} ms"
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    )
    return f"  {label}: {points}, max {max(seconds) * 1000:.0f} ms, mean " + (
        f"{statistics.mean(seconds) * 1000:.0f} ms"
    )


def queued_behind_another(rows: list[Any]) -> set[int]:
    """Commands queued while their device still had an earlier one unfinished:
    the agent runs one at a time, so these wait for it by design."""
    behind = set()
    for command in rows:
        for earlier in rows:
            if (
                earlier.device_id == command.device_id
                and earlier.created_at < command.created_at
                and (earlier.finished_at is None or earlier.finished_at > command.created_at)
            ):
                behind.add(command.pk)
                break
    return behind


def report(args: argparse.Namespace, command_ids: list[str], fleet: Fleet) -> None:
    from commands.models import Command

    rows = list(Command.objects.filter(public_id__in=command_ids))
    acked = [c for c in rows if c.started_at is not None]
    ack = [(c.started_at - c.created_at).total_seconds() for c in acked]
    behind = queued_behind_another(rows)
    ack_idle = [(c.started_at - c.created_at).total_seconds() for c in acked if c.pk not in behind]
    delivery = [
        (c.delivered_at - c.created_at).total_seconds() for c in rows if c.delivered_at is not None
    ]
    lost = len(command_ids) - sum(1 for c in rows if c.status == "succeeded")
    twice = sum(1 for c in rows if fleet.runs[str(c.public_id)] > 1 or c.attempts > 1)
    # Where the time between delivery and ack goes (one machine: one wall clock).
    sent = {str(c.public_id): fleet.ack_sent.get(str(c.public_id)) for c in acked}
    in_agent = [
        sent[str(c.public_id)] - c.delivered_at.timestamp()
        for c in acked
        if sent[str(c.public_id)] and c.delivered_at
    ]
    in_ack = [
        c.started_at.timestamp() - sent[str(c.public_id)] for c in acked if sent[str(c.public_id)]
    ]
    p99 = percentile(ack, 0.99) if ack else float("inf")
    print(
        f"\n{len(command_ids)} pings over {args.spread:.0f} s to {args.agents} agents "
        f"(one gunicorn ASGI worker, LONG_POLL_MAX_SECONDS={args.long_poll_max})"
    )
    print(describe("queue -> ack     ", ack))
    print(describe(f"  device idle ({len(ack_idle)})", ack_idle))
    print(f"  queued while the device ran another (one at a time): {len(behind)}")
    print(describe("queue -> delivery", delivery))
    print(describe("delivery -> ack sent (answer travels, agent claims)", in_agent))
    print(describe("ack sent -> ack recorded (server)", in_ack))
    print(f"  acked {len(acked)}/{len(command_ids)}; lost {lost}; run or delivered twice {twice}")
    verdict = "PASS" if p99 < TARGET_P99_SECONDS and lost == 0 and twice == 0 else "FAIL"
    print(f"  target: p99 < {TARGET_P99_SECONDS:.0f} s, none lost, none twice -> {verdict}")


def main() -> None:
    args = parse_args()
    env = server_environment(args)
    print("preparing", flush=True)
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--noinput"], env)
    os.environ.update(env)
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    keys, token = seed(args.agents)
    with tempfile.TemporaryDirectory(prefix="longpoll-bench-") as workdir:
        node = WebNode(env, Path(workdir) / "gunicorn.log")
        fleet = Fleet(node.url, keys, Path(workdir))
        try:
            fleet.start()
            time.sleep(3.0)  # every agent's first poll is out
            print(f"  agents long-polling: {fleet.long_polling()}/{args.agents}", flush=True)
            rng = random.Random(args.seed)
            command_ids = queue_commands(
                node.url, token, list(keys), args.commands, args.spread, rng
            )
            wait_until_final(command_ids, args.settle)
            report(args, command_ids, fleet)
        finally:
            fleet.close()
            node.stop()


if __name__ == "__main__":
    main()
