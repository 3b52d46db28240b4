"""Fleet soak: N simulated agents against one HOMEPOT server; what arrived vs what was sent.

Each simulated agent follows HOMEPOT's agent (agent_client/homepot_agent):

* a heartbeat when it starts (with the agent's attributes and instance id);
* a poll loop: ``GET /api/v1/devices/pending?wait=30&limit=1`` again as soon as
  it is answered (``--plain-poll``, or a server that does not advertise
  ``X-Long-Poll-Max``: ``?limit=1`` every ``X-Poll-Interval`` seconds); a
  command it gets is acknowledged (``POST .../commands/<id>/ack``) and its
  result reported (``PUT /api/v1/devices/<id>/status``);
* every ``--push-interval`` seconds (60) a telemetry batch, then a heartbeat, as
  the agent's ``push_once`` does: 6 samples x 20 metrics = 120 values with a
  unique ``batch_id``; a batch that got no answer is sent again, with the same
  id, before the next one (the agent's spool). Each device's values are
  numbered 1, 2, 3, ... so that the end check can compare, per device, the
  number and the sum of the values the server acknowledged with the rows in
  ``analytics_sample``.

An operator queues ``--commands`` ``ping`` commands at random times through the
operator API (an integration token), each to a random agent already running.
Every delivery is counted: a command acknowledged once is right, one never
acknowledged by the end is lost, one an agent receives again is a double.

It prints, per endpoint, requests, errors (non-2xx by status, connection
errors, timeouts) and p50/p99/max latency, for the whole run and for its start
(agents start spread over ``--ramp`` seconds); for long polls the time from a
command's queueing to its acknowledgement instead of the 30 s hold; the CPU of
the gunicorn processes, of this database's PostgreSQL backends, of Redis and of
the load generator; the RSS of the gunicorn workers; then a PASS/FAIL verdict
against the targets (every device endpoint's p99 under 250 ms, no errors, no
sample lost, no command lost or delivered twice). The last line is a JSON
summary (also written to ``--json-out``).

Exit status: 0 when nothing was lost and nothing delivered twice (timing and
errors only change the verdict), 1 otherwise, 2 when the run could not start.

Without ``--server-url`` it drops and re-creates its own PostgreSQL database
(the name must contain "soak"), flushes its Redis DB, migrates, registers the
devices through ``devices.services.device_register`` (bench/seed_devices.py,
with ``DEVICE_KEY_BCRYPT_ROUNDS=4`` for any legacy bcrypt hash, a benchmark
shortcut: new keys are HMAC and cheap anyway), creates an operator with a
token, and starts gunicorn with HOMEPOT's uvicorn worker (as production runs)
with one worker per core. With ``--server-url`` it uses a running server: give
the devices (a ``device_id<TAB>api_key`` file from bench/seed_devices.py), an
operator token, and the server's database for the end check.

The load generator is aiohttp, split over ``--processes`` processes, each with
its own event loop and share of the agents. Measured on this box against a
trivial ASGI app, httpx 0.28 cost 2-4 ms of client CPU per request and aiohttp
0.13-0.3 ms: 10,000 agents make about 670 requests/s, which httpx could not
send from two shared cores.

    .venv/bin/python bench/fleet_soak.py --agents 10000 --minutes 10
    .venv/bin/python bench/fleet_soak.py --agents 500 --seconds 60 --commands 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import redis
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable

PENDING_PATH = "/api/v1/devices/pending"
HEARTBEAT_PATH = "/api/v1/devices/heartbeat"
METRICS_PATH = "/api/v1/analytics/device-metrics"
ADVERT_HEADER = "X-Long-Poll-Max"
POLL_HEADER = "X-Poll-Interval"
AGENT_VERSION = "0.0.0-soak"
# The push: 120 values a minute = 6 samples (the agent collects every 10 s) x 20 metrics.
SAMPLES_PER_PUSH, METRICS_PER_SAMPLE, SAMPLE_SPACING = 6, 20, 10.0
METRIC_NAMES = [f"soak_m{n:02d}" for n in range(METRICS_PER_SAMPLE)]
REQUEST_TIMEOUT = 15.0  # the agent's default
LONG_POLL_SLACK = 15.0  # a long poll's timeout beyond its wait
ERROR_BACKOFF = 5.0
LOOP_LAG_ROW = "load generator loop lag"
STUCK_SECONDS = 30.0  # an agent still running this long after the end is cancelled
# The rows of the table, in order; "pending" is split by what the poll was.
DEVICE_ENDPOINTS = ("heartbeat", "telemetry", "pending", "ack", "report")
OPERATOR_ENDPOINT = "operator queue"
P99_TARGET_MS, QUEUE_TO_ACK_TARGET_MS = 250.0, 1000.0
SERVER_SECRET = "soak-secret-key-not-for-production-0123456789abcdef"


# --- Command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the run (default 1)")
    length.add_argument("--seconds", type=float, help="length of the run")
    parser.add_argument("--ramp", type=float, default=60.0, help="agents start spread over this")
    parser.add_argument("--commands", type=int, default=100, help="commands the operator queues")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--long-poll", dest="long_poll", action="store_true", default=True)
    mode.add_argument("--plain-poll", dest="long_poll", action="store_false")
    parser.add_argument("--wait", type=int, default=30, help="long poll's wait (seconds)")
    parser.add_argument("--push-interval", type=float, default=60.0)
    parser.add_argument("--drain", type=float, help="polling goes on this long after the end")
    parser.add_argument("--processes", type=int, help="load generator processes")
    parser.add_argument("--seed", type=int, default=1, help="random seed (start times, operator)")
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_soak"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn")
    parser.add_argument("--backlog", type=int, default=4096, help="gunicorn's listen backlog")
    parser.add_argument("--web-threads", type=int, help="WEB_THREADS (the server's default: 4)")
    parser.add_argument("--server-url", help="use this running server (no setup)")
    parser.add_argument("--devices-file", type=Path, help="with --server-url: id<TAB>key lines")
    parser.add_argument("--operator-token", help="with --server-url: an operator's API token")
    parser.add_argument("--json-out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--keep-server-log", type=Path, help="copy gunicorn's log here")
    parser.add_argument(
        "--setup-cache",
        type=Path,
        help="keep the seeded database as a template (and its keys and token here); "
        "later runs with as many agents or fewer copy it instead of seeding again",
    )
    args = parser.parse_args(argv)
    args.run_seconds = args.seconds if args.seconds else 60.0 * (args.minutes or 1.0)
    args.ramp = min(args.ramp, args.run_seconds / 2)
    if args.drain is None:
        # Long polls answer a command at once; plain polls come every 30 s.
        args.drain = 10.0 if args.long_poll else 40.0
    if args.processes is None:
        args.processes = 1 if args.agents <= 2000 else 2
    if args.server_url and (not args.devices_file or (args.commands and not args.operator_token)):
        parser.error("--server-url needs --devices-file (and --operator-token for --commands)")
    return args


def raise_open_files_limit() -> int:
    """Each waiting agent is one socket here and one in the server (gunicorn inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- Setup: database, Redis, devices, operator, gunicorn --------------------------------------


def database_name(database_url: str) -> str:
    return urllib.parse.urlsplit(database_url).path.lstrip("/")


def recreate_database(database_url: str) -> None:
    name = database_name(database_url)
    if "soak" not in name:
        sys.exit(f"refusing to drop database {name!r}: its name must contain 'soak'")
    maintenance = urllib.parse.urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True) as conn:
        identifier = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))


def flush_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    threads = {"WEB_THREADS": str(args.web_threads)} if args.web_threads else {}
    return (
        os.environ
        | threads
        | {
            "DJANGO_SETTINGS_MODULE": "homepot.settings",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "DEBUG": "false",
            # Seeding and serving share it: new device keys are HMAC under a key derived from it.
            "SECRET_KEY": SERVER_SECRET,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )


def run_step(label: str, command: list[str], env: dict[str, str]) -> str:
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{label} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        sys.exit(2)
    print(f"  {label}: {time.monotonic() - started:.1f}s", flush=True)
    return result.stdout


def prepare(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> tuple[Path, str]:
    """A fresh database with the devices and an operator: (devices file, operator token)."""
    print(f"setup (database {database_name(args.database_url)}, redis {args.redis_url}):")
    flush_redis(args.redis_url)
    cache = args.setup_cache
    if cache is not None and (cached := from_setup_cache(args, cache)) is not None:
        return cached
    recreate_database(args.database_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    devices = workdir / "devices.tsv"
    seed = [
        PYTHON, str(BENCH_DIR / "seed_devices.py"), "--count", str(args.agents),
        "--out", str(devices), "--processes", str(os.cpu_count() or 2),
    ]  # fmt: skip
    # A benchmark shortcut: bcrypt (legacy hashes only) at its cheapest cost, which needs DEBUG.
    seed_env = env | {"DEVICE_KEY_BCRYPT_ROUNDS": "4", "DEBUG": "true"}
    run_step(f"register {args.agents} devices", seed, seed_env)
    operator = [
        PYTHON, "manage.py", "homepot_user", "soak-operator", "--role", "operator", "--token-only",
    ]  # fmt: skip
    token = run_step("operator and token", operator, env).strip()
    if cache is not None:
        to_setup_cache(args, cache, devices, token)
    return devices, token


def _template_name(args: argparse.Namespace) -> str:
    return f"{database_name(args.database_url)}_template"


def _copy_database(database_url: str, source: str, target: str) -> None:
    maintenance = urllib.parse.urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(target), sql.Identifier(source)
            )
        )


def from_setup_cache(args: argparse.Namespace, cache: Path) -> tuple[Path, str] | None:
    """The database copied from the template a run before left, if it has enough devices."""
    devices, token = cache / "devices.tsv", cache / "token"
    if not (devices.exists() and token.exists()):
        return None
    if len(devices.read_text().splitlines()) < args.agents:
        return None
    started = time.monotonic()
    try:
        _copy_database(args.database_url, _template_name(args), database_name(args.database_url))
    except psycopg.Error as exc:
        print(f"  setup cache unusable ({exc}); seeding again")
        return None
    print(f"  database copied from {_template_name(args)}: {time.monotonic() - started:.1f}s")
    return devices, token.read_text().strip()


def to_setup_cache(args: argparse.Namespace, cache: Path, devices: Path, token: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    _copy_database(args.database_url, database_name(args.database_url), _template_name(args))
    (cache / "devices.tsv").write_text(devices.read_text())
    (cache / "token").write_text(token)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """gunicorn with HOMEPOT's ASGI worker, as production runs it; stopped whatever happens."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            PYTHON, "-m", "gunicorn", "homepot.asgi:application",
            "--bind", self.url.removeprefix("http://"),
            "--workers", str(self.args.workers),
            "--worker-class", "homepot.web_worker.Worker",
            "--backlog", str(self.args.backlog),
            "--graceful-timeout", "10",
            "--keep-alive", "75",  # as the image runs it
            "--log-level", "warning",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self._wait_until_long_polling()

    def _wait_until_long_polling(self, timeout: float = 60.0) -> None:
        """Until the workers answer and advertise long polls (their Redis subscription is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + PENDING_PATH, timeout=2):
                    pass
            except urllib.error.HTTPError as exc:  # 401 without a key: through the router
                if exc.headers.get(ADVERT_HEADER) and len(self.pids()) > self.args.workers:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        print(f"gunicorn did not start long-polling; its log:\n{self.log_tail()}")
        sys.exit(2)

    def pids(self) -> list[int]:
        """The master and its workers."""
        if self.process is None:
            return []
        return [self.process.pid, *child_pids(self.process.pid)]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def load_devices(path: Path, count: int) -> list[tuple[str, str]]:
    pairs = [line.split("\t", 1) for line in path.read_text().splitlines() if line.strip()]
    if len(pairs) < count:
        sys.exit(f"{path} names {len(pairs)} devices, fewer than --agents {count}")
    return [(device_id, key) for device_id, key in pairs[:count]]


# --- /proc: CPU and memory of the server, PostgreSQL, Redis and the load generator ------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may contain spaces; the fields after ")" are fixed.
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def child_pids(parent: int) -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (stat := _stat(int(entry))) and int(stat[1]) == parent
    ]


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # busy (idle, iowait out), total


class CpuWatch:
    """Samples CPU ticks of process groups every few seconds, in a thread.

    A process that appears during the run counts from zero; one that exits
    keeps what it was last seen with (a PostgreSQL backend of a closed
    connection, say)."""

    def __init__(self, groups: dict[str, Any], interval: float = 2.0) -> None:
        self.groups = groups  # name -> callable returning the pids now
        self.interval = interval
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.members: dict[str, set[int]] = defaultdict(set)
        self.peak_rss_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.started_at, self.machine_start = time.monotonic(), _machine_ticks()
        self._sample(initial=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self._sample(initial=False)
        seconds = time.monotonic() - self.started_at
        busy, total = (a - b for a, b in zip(_machine_ticks(), self.machine_start, strict=True))
        cores = {
            name: sum(self.last[p] - self.first.get(p, 0) for p in pids) / CLOCK_TICKS / seconds
            for name, pids in self.members.items()
        }
        return {"seconds": seconds, "machine_busy": busy / max(total, 1), "cores": cores}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(initial=False)

    def _sample(self, *, initial: bool) -> None:
        for name, pids_now in self.groups.items():
            for pid in pids_now():
                stat = _stat(pid)
                if stat is None:
                    continue
                ticks = int(stat[11]) + int(stat[12])
                if initial:
                    self.first[pid] = ticks
                self.last[pid] = ticks
                self.members[name].add(pid)
                self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), int(stat[21]) * PAGE_KB)


def processes_named(word: str, *, cmdline_has: str = "") -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith(word) and (not cmdline_has or cmdline_has in _cmdline(int(entry))):
            pids.append(int(entry))
    return pids


def rss_kb(pid: int) -> int:
    stat = _stat(pid)
    return int(stat[21]) * PAGE_KB if stat else 0


# --- Measurements -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """What one load process saw: latencies (ms) by (row, phase), outcomes by (row, status)."""

    ramp_ends_at: float  # wall clock
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter = field(default_factory=Counter)

    def phase(self, started_wall: float) -> str:
        return "start" if started_wall < self.ramp_ends_at else "steady"

    def latency(self, row: str, started_wall: float, ms: float) -> None:
        self.latencies[(row, self.phase(started_wall))].append(ms)

    def outcome(self, row: str, status: str) -> None:
        self.outcomes[(row, status)] += 1


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- One simulated agent ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What every load process needs to know (picklable)."""

    base_url: str
    long_poll: bool
    wait: int
    push_interval: float
    started_at: float  # wall clock: offsets count from here
    run_seconds: float
    drain_seconds: float
    ramp_seconds: float


@dataclass
class Ledger:
    """One agent's account: what the server acknowledged, what stayed in doubt."""

    acked_values: int = 0
    acked_sum: float = 0.0
    acked_batches: int = 0
    doubtful_values: int = 0  # sent, no answer, not confirmed by a retry before the end
    unsent_values: int = 0  # never sent before the end (the spool)
    commands: list[dict[str, Any]] = field(default_factory=list)
    doubles: list[str] = field(default_factory=list)
    fallbacks: int = 0  # polls answered without the long-poll advertisement


@dataclass
class Batch:
    batch_id: str
    samples: list[dict[str, Any]]
    values: int
    total: float
    tried: bool = False


@dataclass
class Response:
    status: int
    headers: Any
    body: Any
    ms: float
    started_wall: float


class Agent:
    def __init__(
        self,
        device_id: str,
        api_key: str,
        offset: float,
        plan: Plan,
        http: aiohttp.ClientSession,
        recorder: Recorder,
    ) -> None:
        self.device_id, self.offset, self.plan = device_id, offset, plan
        self.http, self.recorder = http, recorder
        self.headers = {"X-Device-ID": device_id, "X-API-Key": api_key}
        self.ledger = Ledger()
        self.spool: list[Batch] = []
        self.seen: set[str] = set()
        self.instance_id = uuid.uuid4().hex
        self.value_seq = 0
        self.sample_seq = 0
        self.long_poll = plan.long_poll
        self.ends_at = plan.started_at + plan.run_seconds + plan.drain_seconds

    # The moments of the plan, as loop times.
    def at(self, offset: float) -> float:
        return self.plan.started_at + offset

    async def run(self) -> None:
        await sleep_until(self.at(self.offset))
        await self.heartbeat()
        poller = asyncio.create_task(self.poll_loop())
        try:
            await self.push_loop()
            await sleep_until(self.at(self.plan.run_seconds + self.plan.drain_seconds))
        finally:
            poller.cancel()
            await asyncio.wait([poller], timeout=LONG_POLL_SLACK)

    def settle(self) -> None:
        """What stays in the spool at the end: sent without an answer (in doubt) or never sent."""
        for batch in self.spool:
            if batch.tried:
                self.ledger.doubtful_values += batch.values
            else:
                self.ledger.unsent_values += batch.values

    async def request(
        self,
        row: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Response | None:
        """One request; None (counted as an error) when nothing usable answered."""
        started_wall, started = time.time(), time.monotonic()
        try:
            async with self.http.request(
                method,
                self.plan.base_url + path,
                json=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                raw = await answer.read()
                status, headers = answer.status, answer.headers
        except TimeoutError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None  # aiohttp's timeout must not swallow a stop
            self.recorder.outcome(row, "timeout")
            return None
        except aiohttp.ClientError as exc:
            self.recorder.outcome(row, type(exc).__name__)
            return None
        ms = (time.monotonic() - started) * 1000
        self.recorder.outcome(row, str(status))
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if row != "pending":  # a long poll's hold is no latency (poll_loop records its own)
            self.recorder.latency(row, started_wall, ms)
        return Response(status, headers, parsed, ms, started_wall)

    async def heartbeat(self) -> None:
        attributes = {
            "hostname": self.device_id,
            "boot_id": "soak",
            "instance_id": self.instance_id,
        }
        body = {"attributes": attributes | {"spool_depth": len(self.spool)}}
        await self.request(
            "heartbeat", "POST", HEARTBEAT_PATH, body=body | {"agent_version": AGENT_VERSION}
        )

    # --- telemetry -------------------------------------------------------------------------

    async def push_loop(self) -> None:
        interval = self.plan.push_interval
        due = self.offset + random.uniform(0, interval)  # each agent its own phase
        while due < self.plan.run_seconds:
            await sleep_until(self.at(due))
            self.spool.append(self.next_batch())
            await self.drain_spool()
            await self.heartbeat()
            due += interval

    def next_batch(self) -> Batch:
        samples, values, total = [], 0, 0.0
        for _ in range(SAMPLES_PER_PUSH):
            # Timestamps of a device never repeat (the table's key is device, metric, ts).
            ts = self.plan.started_at - 3600 + self.sample_seq * SAMPLE_SPACING
            self.sample_seq += 1
            metrics = {}
            for name in METRIC_NAMES:
                self.value_seq += 1
                metrics[name] = float(self.value_seq)
                total += self.value_seq
            values += len(metrics)
            samples.append({"ts": round(ts, 3), "metrics": metrics})
        batch_id = f"{self.device_id}-{self.sample_seq // SAMPLES_PER_PUSH}"
        return Batch(batch_id, samples, values, total)

    async def drain_spool(self) -> None:
        """Oldest first; stop at the first failure (the rest waits for the next push)."""
        # A spool that grew while the server did not answer is not sent past the end.
        while self.spool and time.time() < self.at(self.plan.run_seconds):
            batch = self.spool[0]
            batch.tried = True
            body = {"batch_id": batch.batch_id, "samples": batch.samples}
            response = await self.request("telemetry", "POST", METRICS_PATH, body=body)
            if response is None or response.status not in (200, 201):
                return
            self.spool.pop(0)
            self.ledger.acked_values += batch.values
            self.ledger.acked_sum += batch.total
            self.ledger.acked_batches += 1

    # --- commands --------------------------------------------------------------------------

    async def poll_loop(self) -> None:
        while time.time() < self.ends_at:
            wait = self.plan.wait if self.long_poll else 0
            path = f"{PENDING_PATH}?wait={wait}&limit=1" if wait else f"{PENDING_PATH}?limit=1"
            timeout = wait + LONG_POLL_SLACK if wait else REQUEST_TIMEOUT
            response = await self.request("pending", "GET", path, timeout=timeout)
            if response is None or response.status != 200:
                await asyncio.sleep(ERROR_BACKOFF)
                continue
            commands = response.body or []
            self.record_poll(response, wait, bool(commands))
            if self.plan.long_poll:
                advertised = bool(response.headers.get(ADVERT_HEADER))
                self.ledger.fallbacks += not advertised
                self.long_poll = advertised  # as the agent: no advertisement, plain polls
            for command in commands:
                await self.take(command)
            if not commands and (not self.long_poll or response.ms < 1000 * min(wait, 1)):
                await asyncio.sleep(advised_interval(response.headers) if not self.long_poll else 1)

    def record_poll(self, response: Response, wait: int, answered: bool) -> None:
        started_wall = response.started_wall
        if not wait:
            self.recorder.latency("pending", started_wall, response.ms)
        elif answered:
            self.recorder.outcome("pending (long poll)", "command")
        else:
            self.recorder.outcome("pending (long poll)", "timed out")
            # How long past its wait the empty answer came: the hold itself is no latency.
            overshoot = max(0.0, response.ms - 1000 * wait)
            self.recorder.latency("pending: past the wait", started_wall, overshoot)

    async def take(self, command: dict[str, Any]) -> None:
        command_id = str(command["command_id"])
        received = time.time()
        if command_id in self.seen:
            # The agent would not run it again (its ledger); here it is counted.
            self.ledger.doubles.append(command_id)
            return
        self.seen.add(command_id)
        record = {"command_id": command_id, "device_id": self.device_id, "received": received}
        self.ledger.commands.append(record)
        ack_path = f"/api/v1/devices/{self.device_id}/commands/{command_id}/ack"
        ack = await self.until_answered("ack", "POST", ack_path)
        record["ack_status"] = ack.status
        record["acked"] = time.time() if ack.status == 200 else None
        if record["acked"] is None:
            return  # refused (409): canceled or queued again meanwhile
        report = {"status": "succeeded", "result": {"pong": True}, "executed_at": iso_now()}
        path = f"/api/v1/devices/{command_id}/status"
        answer = await self.until_answered("report", "PUT", path, body=report)
        record["report_status"] = answer.status

    async def until_answered(
        self, row: str, method: str, path: str, *, body: Any = None
    ) -> Response:
        """As the agent: an ack or a result that got no answer (or 429, 5xx) is sent again."""
        while True:
            response = await self.request(row, method, path, body=body)
            answered = response is not None and response.status != 429 and response.status < 500
            if answered or time.time() >= self.ends_at:
                return response or Response(0, {}, None, 0.0, time.time())
            await asyncio.sleep(ERROR_BACKOFF)


def advised_interval(headers: Any) -> float:
    try:
        return min(300.0, max(1.0, float(headers.get(POLL_HEADER) or 30)))
    except ValueError:
        return 30.0


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# --- A load process ---------------------------------------------------------------------------


async def watch_loop_lag(recorder: Recorder) -> None:
    """How late this process's event loop runs a timer: if the load generator
    itself lags, every latency it measures includes that lag."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(0.5)
        late_ms = (time.monotonic() - started - 0.5) * 1000
        recorder.latency(LOOP_LAG_ROW, time.time(), late_ms)


def load_process(plan: Plan, agents: list[tuple[str, str, float]], seed: int, results: Any) -> None:
    """Runs its agents in one event loop; sends back what it saw."""
    raise_open_files_limit()
    random.seed(seed)
    recorder = Recorder(ramp_ends_at=plan.started_at + plan.ramp_seconds)
    ledgers = asyncio.run(run_agents(plan, agents, recorder))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        {
            "latencies": dict(recorder.latencies),
            "outcomes": dict(recorder.outcomes),
            "ledgers": {device_id: asdict(ledger) for device_id, ledger in ledgers.items()},
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }
    )


async def run_agents(
    plan: Plan, specs: list[tuple[str, str, float]], recorder: Recorder
) -> dict[str, Ledger]:
    # No per-host limit: every waiting agent holds a connection. Idle connections
    # are dropped before uvicorn's own 5 s keep-alive ends, so a request never
    # goes out on a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3.0)
    async with aiohttp.ClientSession(connector=connector) as http:
        agents = [Agent(d, k, o, plan, http, recorder) for d, k, o in specs]
        tasks = [asyncio.create_task(agent.run()) for agent in agents]
        lag = asyncio.create_task(watch_loop_lag(recorder))
        end = plan.started_at + plan.run_seconds + plan.drain_seconds + STUCK_SECONDS
        _, stuck = await asyncio.wait(tasks, timeout=max(1.0, end - time.time()))
        # Every agent stops by itself at the end: one that did not is a bench bug
        # (or a request that never ended): say where it hangs, count it, go on.
        for task in list(stuck)[:3]:
            task.print_stack(file=sys.stderr)
        for task in stuck:
            task.cancel()
        if stuck:
            recorder.outcome("agents stuck past the end", "cancelled")
            recorder.outcomes[("agents stuck past the end", "cancelled")] = len(stuck)
            await asyncio.wait(stuck, timeout=10)
    lag.cancel()
    for agent in agents:
        agent.settle()
    return {agent.device_id: agent.ledger for agent in agents}


# --- The operator -----------------------------------------------------------------------------


async def operate(
    base_url: str,
    token: str,
    schedule: list[tuple[float, str]],
    recorder: Recorder,
) -> list[dict[str, Any]]:
    """Queue a ping for each (time, device); a retry keeps the Idempotency-Key."""
    headers = {"Authorization": f"Token {token}"}
    queued: list[dict[str, Any]] = []
    # As the agents': idle connections dropped before uvicorn's 5 s keep-alive ends.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3.0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def queue(at: float, device_id: str) -> None:
            await sleep_until(at)
            key = uuid.uuid4().hex
            for _ in range(3):
                sent = time.time()
                started = time.monotonic()
                try:
                    async with http.post(
                        f"{base_url}/api/v1/devices/{device_id}/commands",
                        json={"command_type": "ping"},
                        headers={"Idempotency-Key": key},
                        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                    ) as answer:
                        body = await answer.json(content_type=None)
                        status = answer.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    recorder.outcome(OPERATOR_ENDPOINT, type(exc).__name__)
                    continue
                recorder.outcome(OPERATOR_ENDPOINT, str(status))
                recorder.latency(OPERATOR_ENDPOINT, sent, (time.monotonic() - started) * 1000)
                if status in (200, 201):
                    queued.append(
                        {"command_id": body["command_id"], "device_id": device_id, "sent": sent}
                    )
                    return
                await asyncio.sleep(1.0)

        await asyncio.gather(*(queue(at, device_id) for at, device_id in schedule))
    return queued


def operator_schedule(
    rng: random.Random, agents: list[tuple[str, str, float]], plan: Plan, count: int
) -> list[tuple[float, str]]:
    """`count` (wall time, device) pairs, each to an agent already started then.

    Queued between 10% and 90% of the run, and at least `drain` before its end
    minus a little, so each can be delivered before the agents stop."""
    last = max(plan.run_seconds * 0.9, 1.0)
    schedule = []
    for _ in range(count):
        offset = rng.uniform(plan.run_seconds * 0.1, last)
        started = [device_id for device_id, _, start in agents if start + 1.0 < offset]
        device_id = rng.choice(started or [agents[0][0]])
        schedule.append((plan.started_at + offset, device_id))
    return sorted(schedule)


# --- Running the load -------------------------------------------------------------------------


def run_load(
    args: argparse.Namespace, plan: Plan, devices: list[tuple[str, str]], token: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = random.Random(args.seed)
    agents = [(d, k, rng.uniform(0, plan.ramp_seconds)) for d, k in devices]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shares = [agents[n :: args.processes] for n in range(args.processes)]
    processes = [
        context.Process(target=load_process, args=(plan, share, args.seed + n, results))
        for n, share in enumerate(shares)
    ]
    for process in processes:
        process.start()
    schedule = operator_schedule(rng, agents, plan, args.commands) if token else []
    recorder = Recorder(ramp_ends_at=plan.started_at + plan.ramp_seconds)
    queued = asyncio.run(operate(plan.base_url, token or "", schedule, recorder))
    parts = [results.get() for _ in processes]
    for process in processes:
        process.join()
    parts.append(
        {"latencies": dict(recorder.latencies), "outcomes": dict(recorder.outcomes), "ledgers": {}}
    )
    return merge(parts), queued


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    outcomes: Counter = Counter()
    ledgers: dict[str, dict[str, Any]] = {}
    for part in parts:
        for key, values in part["latencies"].items():
            latencies[key].extend(values)
        outcomes.update(part["outcomes"])
        ledgers.update(part["ledgers"])
    cpu = sum(part.get("cpu_seconds", 0.0) for part in parts)
    return {"latencies": latencies, "outcomes": outcomes, "ledgers": ledgers, "cpu_seconds": cpu}


# --- The end check: the database against what was sent ----------------------------------------


def stored_per_device(database_url: str, device_ids: list[str]) -> dict[str, tuple[int, float]]:
    """(rows, sum of values) in analytics_sample for each of these devices."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT d.device_id, count(*), sum(s.value) FROM analytics_sample s"
            " JOIN devices_device d ON d.id = s.device_id"
            " WHERE d.device_id = ANY(%s) GROUP BY d.device_id",
            [device_ids],
        ).fetchall()
    return {public_id: (count, total) for public_id, count, total in rows}


def command_statuses(database_url: str, command_ids: list[str]) -> dict[str, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, count(*), max(attempts) FROM commands_command"
            " WHERE command_id = ANY(%s::uuid[]) GROUP BY status",
            [command_ids],
        ).fetchall()
    return {
        "by_status": {status: count for status, count, _ in rows},
        "max_attempts": max((attempts for *_, attempts in rows), default=0),
    }


def check_samples(database_url: str, ledgers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stored = stored_per_device(database_url, list(ledgers))
    sent = sum(ledger["acked_values"] for ledger in ledgers.values())
    doubtful = sum(ledger["doubtful_values"] for ledger in ledgers.values())
    short, extra, lost = [], [], 0
    for device_id, ledger in ledgers.items():
        rows, total = stored.get(device_id, (0, 0.0))
        if rows < ledger["acked_values"] or (
            rows == ledger["acked_values"] and total != ledger["acked_sum"]
        ):
            short.append(device_id)  # lost (or other values than were sent)
            lost += max(1, ledger["acked_values"] - rows)
        elif rows > ledger["acked_values"] + ledger["doubtful_values"]:
            extra.append(device_id)  # more than was sent: stored twice
    stored_total = sum(rows for rows, _ in stored.values())
    return {
        "values_acknowledged": sent,
        "values_in_doubt": doubtful,
        "values_unsent": sum(ledger["unsent_values"] for ledger in ledgers.values()),
        "batches_acknowledged": sum(ledger["acked_batches"] for ledger in ledgers.values()),
        "rows_stored": stored_total,
        "devices_short": short[:20],
        "devices_short_count": len(short),
        "devices_over_count": len(extra),
        "lost": lost,
    }


def check_commands(
    database_url: str, queued: list[dict[str, Any]], ledgers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    sent = {q["command_id"]: q for q in queued}
    deliveries = Counter()
    acked, latencies = set(), []
    for ledger in ledgers.values():
        for record in ledger["commands"]:
            deliveries[record["command_id"]] += 1
            if record.get("acked") is not None:
                acked.add(record["command_id"])
                if record["command_id"] in sent:
                    latencies.append((record["acked"] - sent[record["command_id"]]["sent"]) * 1000)
    doubles = sum(len(ledger["doubles"]) for ledger in ledgers.values())
    doubles += sum(n - 1 for n in deliveries.values() if n > 1)  # to two devices
    lost = sorted(set(sent) - acked)
    database = command_statuses(database_url, list(sent)) if sent else {"by_status": {}}
    return {
        "queued": len(sent),
        "delivered": len(deliveries),
        "acked": len(acked & set(sent)),
        "reported": sum(
            1
            for ledger in ledgers.values()
            for record in ledger["commands"]
            if record.get("report_status") == 200
        ),
        "twice": doubles,
        "lost": len(lost),
        "lost_ids": lost[:20],
        "queue_to_ack_ms": latencies,
        "database": database,
    }


# --- Report -----------------------------------------------------------------------------------


def row_stats(name: str, merged: dict[str, Any]) -> dict[str, Any]:
    outcomes = {s: n for (row, s), n in merged["outcomes"].items() if row == name}
    every = merged["latencies"].get((name, "start"), []) + merged["latencies"].get(
        (name, "steady"), []
    )
    errors = {s: n for s, n in outcomes.items() if not s.startswith("2")}
    return {
        "requests": sum(outcomes.values()) or len(every),
        "errors": errors,
        "p50_ms": percentile(every, 0.50),
        "p99_ms": percentile(every, 0.99),
        "max_ms": max(every) if every else None,
        "p99_start_ms": percentile(merged["latencies"].get((name, "start"), []), 0.99),
        "p99_steady_ms": percentile(merged["latencies"].get((name, "steady"), []), 0.99),
    }


def fmt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}"


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print(
        f"  {'endpoint':<26}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'p99 start':>10}{'p99 steady':>11}  errors"
    )
    for name, r in rows.items():
        errors = ", ".join(f"{s}: {n}" for s, n in sorted(r["errors"].items())) or "0"
        print(
            f"  {name:<26}{r['requests']:>9}{fmt(r['p50_ms']):>9}{fmt(r['p99_ms']):>9}"
            f"{fmt(r['max_ms']):>9}{fmt(r['p99_start_ms']):>10}{fmt(r['p99_steady_ms']):>11}"
            f"  {errors}"
        )


def verdict(
    rows: dict[str, dict[str, Any]], samples: dict[str, Any], commands: dict[str, Any]
) -> tuple[bool, list[str]]:
    """(correct, failures): correctness is nothing lost and nothing twice; the rest is timing."""
    failures = []
    for name, r in rows.items():
        if name == LOOP_LAG_ROW:
            continue  # the load generator's own health: shown, no target
        if r["p99_ms"] is not None and r["p99_ms"] >= P99_TARGET_MS:
            failures.append(f"{name} p99 {r['p99_ms']:.0f} ms >= {P99_TARGET_MS:.0f} ms")
        if r["errors"]:
            failures.append(f"{name}: {sum(r['errors'].values())} errors")
    queue_to_ack = percentile(commands["queue_to_ack_ms"], 0.99)
    if queue_to_ack is not None and queue_to_ack >= QUEUE_TO_ACK_TARGET_MS:
        failures.append(f"queue->ack p99 {queue_to_ack:.0f} ms >= {QUEUE_TO_ACK_TARGET_MS:.0f} ms")
    wrong = []
    if samples["lost"] or samples["devices_short_count"]:
        wrong.append(
            f"samples lost: {samples['lost']} values, "
            f"{samples['devices_short_count']} devices short"
        )
    if samples["devices_over_count"]:
        wrong.append(f"samples stored twice on {samples['devices_over_count']} devices")
    if commands["lost"]:
        wrong.append(f"commands lost (never acknowledged): {commands['lost']}")
    if commands["twice"]:
        wrong.append(f"commands delivered twice: {commands['twice']}")
    return not wrong, wrong + failures


def report(
    args: argparse.Namespace,
    merged: dict[str, Any],
    samples: dict[str, Any],
    commands: dict[str, Any],
    cpu: dict[str, Any] | None,
    rss: dict[str, Any],
) -> dict[str, Any]:
    names = [
        *DEVICE_ENDPOINTS,
        "pending: past the wait",
        OPERATOR_ENDPOINT,
        "agents stuck past the end",
        LOOP_LAG_ROW,
    ]
    rows = {
        n: row_stats(n, merged)
        for n in names
        if any(k[0] == n for k in merged["outcomes"]) or any(k[0] == n for k in merged["latencies"])
    }
    if "pending" in rows and args.long_poll:
        # Long polls: their latency is the hold; what counts is queue -> ack below.
        rows["pending"].update(p50_ms=None, p99_ms=None, max_ms=None)
        rows["pending"].update(p99_start_ms=None, p99_steady_ms=None)
    print(
        f"\nfleet soak: {args.agents} agents, {args.run_seconds:.0f}s "
        f"({'long poll, wait=' + str(args.wait) if args.long_poll else 'plain poll'}), "
        f"push every {args.push_interval:.0f}s of {SAMPLES_PER_PUSH * METRICS_PER_SAMPLE} values, "
        f"agents started over {args.ramp:.0f}s, {args.processes} load process(es)"
    )
    print_table(rows)
    long_polls = {
        s: n for (row, s), n in merged["outcomes"].items() if row == "pending (long poll)"
    }
    fallbacks = sum(ledger["fallbacks"] for ledger in merged["ledgers"].values())
    if args.long_poll:
        print(
            f"  long polls answered: {long_polls.get('command', 0)} with a command, "
            f"{long_polls.get('timed out', 0)} empty after the wait; answers without "
            f"{ADVERT_HEADER} (agents fell back to plain polls): {fallbacks}"
        )
    q2a = commands["queue_to_ack_ms"]
    print(
        f"  commands: queued {commands['queued']}, delivered {commands['delivered']}, acked "
        f"{commands['acked']}, reported {commands['reported']}, lost {commands['lost']}, "
        f"twice {commands['twice']}; queue->ack p50 {fmt(percentile(q2a, 0.5))} ms, "
        f"p99 {fmt(percentile(q2a, 0.99))} ms, max {fmt(max(q2a) if q2a else None)} ms; "
        f"in the database: {commands['database'].get('by_status')}"
    )
    print(
        f"  samples: values acknowledged {samples['values_acknowledged']} "
        f"({samples['batches_acknowledged']} batches), rows stored {samples['rows_stored']}, "
        f"in doubt {samples['values_in_doubt']}, never sent {samples['values_unsent']}; "
        f"devices short {samples['devices_short_count']}, over {samples['devices_over_count']}"
    )
    if cpu is not None:
        cores = ", ".join(f"{name} {value:.2f}" for name, value in cpu["cores"].items())
        print(
            f"  CPU over {cpu['seconds']:.0f}s (cores; 2 = both): {cores}; "
            f"machine busy {cpu['machine_busy']:.0%}"
        )
    if rss:
        print(f"  RSS: {rss}")
    print(f"  load generator CPU: {merged['cpu_seconds']:.0f} s")
    correct, problems = verdict(rows, samples, commands)
    print(
        f"  verdict: {'PASS' if not problems else 'FAIL'}"
        + "".join(f"\n    - {p}" for p in problems)
    )
    return {
        "agents": args.agents,
        "seconds": args.run_seconds,
        "long_poll": args.long_poll,
        "endpoints": rows,
        "samples": samples,
        "commands": {k: v for k, v in commands.items() if k != "queue_to_ack_ms"}
        | {
            "queue_to_ack_p50_ms": percentile(q2a, 0.5),
            "queue_to_ack_p99_ms": percentile(q2a, 0.99),
        },
        "long_polls": long_polls,
        "fallbacks": fallbacks,
        "cpu": cpu,
        "rss_kb": rss,
        "load_cpu_seconds": merged["cpu_seconds"],
        "correct": correct,
        "verdict": "PASS" if not problems else "FAIL",
        "problems": problems,
    }


# --- Main -------------------------------------------------------------------------------------


def watch_groups(server: Server | None, database: str) -> dict[str, Any]:
    # PostgreSQL and Redis serve other databases on this box too: this database's
    # backends are told apart by their command line, the rest only as a whole.
    groups: dict[str, Any] = {
        f"postgres ({database} backends)": lambda: processes_named(
            "postgres", cmdline_has=f" {database} "
        ),
        "postgres (all, shared)": lambda: processes_named("postgres"),
        "redis (shared)": lambda: processes_named("redis-server"),
    }
    if server is not None:
        groups = {"gunicorn": server.pids} | groups
    return groups


def server_log_summary(path: Path, top: int = 8) -> dict[str, int]:
    """gunicorn's warnings and errors, counted by their first words (printed)."""
    counts: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        for level in (" WARNING ", " ERROR ", " CRITICAL ", "[ERROR]", "[CRITICAL]"):
            if level in line:
                counts[level.strip(" []") + " " + line.split(level, 1)[1][:90]] += 1
                break
    if counts:
        print("  server log (warnings and errors, by first words):")
        for message, count in counts.most_common(top):
            print(f"    {count:>7}  {message}")
    return dict(counts.most_common(top))


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace, workdir: Path) -> int:
    server = None
    if args.server_url:
        devices = load_devices(args.devices_file, args.agents)
        token, base_url = args.operator_token, args.server_url.rstrip("/")
    else:
        env = server_environment(args)
        devices_file, token = prepare(args, env, workdir)
        devices = load_devices(devices_file, args.agents)
        server = Server(args, env, workdir / "gunicorn.log")
        server.start()
        base_url = server.url
        print(f"  gunicorn: {server.url}, {args.workers} workers (homepot.web_worker.Worker)")
    try:
        plan = Plan(
            base_url=base_url,
            long_poll=args.long_poll,
            wait=args.wait,
            push_interval=args.push_interval,
            started_at=time.time() + 3.0,  # the load processes start meanwhile
            run_seconds=args.run_seconds,
            drain_seconds=args.drain,
            ramp_seconds=args.ramp,
        )
        cpu_watch = CpuWatch(watch_groups(server, database_name(args.database_url)))
        cpu_watch.start()
        own_before = own_cpu_seconds()
        print(f"running {args.agents} agents for {args.run_seconds:.0f}s ...", flush=True)
        merged, queued = run_load(args, plan, devices, token)
        cpu = cpu_watch.stop()
        # The load processes report their own CPU; this process ran the operator.
        merged["cpu_seconds"] += own_cpu_seconds() - own_before
        cpu["cores"]["load generator"] = merged["cpu_seconds"] / cpu["seconds"]
        rss = {}
        if server is not None:
            rss = {
                "gunicorn workers now": [rss_kb(p) for p in server.pids()[1:]],
                "gunicorn workers peak": [
                    cpu_watch.peak_rss_kb.get(p, 0) for p in server.pids()[1:]
                ],
            }
        samples = check_samples(args.database_url, merged["ledgers"])
        commands = check_commands(args.database_url, queued, merged["ledgers"])
    except BaseException:
        if server is not None:
            print(f"gunicorn log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
            if args.keep_server_log:
                args.keep_server_log.write_text(server.log_path.read_text(errors="replace"))
    summary = report(args, merged, samples, commands, cpu, rss)
    if server is not None:
        summary["server_log"] = server_log_summary(server.log_path)
    line = json.dumps(summary, default=str)
    if args.json_out:
        args.json_out.write_text(line)
    print("FLEET_SOAK_JSON " + line)
    return 0 if summary["correct"] else 1


def main() -> None:
    args = parse_args()
    print(f"open files limit: {raise_open_files_limit()}")
    # SIGTERM unwinds like Ctrl-C, so gunicorn is stopped in both cases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="homepot-soak-") as workdir:
        sys.exit(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
