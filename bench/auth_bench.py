"""Authenticated device requests per second vs. the trivial ``GET /health``.

Targets (from the issues), measured in the same run, with many distinct
devices and production bcrypt cost: authenticated heartbeats at least 50% of
the trivial endpoint's rate, empty command polls at least 60%, HOMEPOT's flat
metrics push (six values, bench/flat_push.lua) at least 30%. Only the first
request per key may pay bcrypt; an empty poll must not touch the database.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_bench``) and flushes a dedicated Redis DB (default ``/3``);
2. ``manage.py migrate``, then registers one site and ``--devices`` devices
   through ``devices.services.device_register`` (bench/seed_devices.py,
   several processes, since each key is one bcrypt hash);
3. starts gunicorn (gthread) on a free port and warms up: one heartbeat per
   device, so every key has paid its one bcrypt check;
4. restarts gunicorn (so PostgreSQL flushes the warm-up's statistics), then
   runs wrk against ``GET /health``, ``POST /api/v1/devices/heartbeat``,
   ``GET /api/v1/devices/pending`` (nothing queued) and the flat push
   ``POST /api/v1/analytics/device-metrics`` alternately, with the same
   duration and connections, and prints rates, ratios, latencies, error
   counts, the database writes the measurement caused, and whether every
   value of every accepted push arrived as a row. It also prints the server's
   CPU per request (gunicorn workers plus the bench database's PostgreSQL
   backends), which depends much less than rates on what else the machine runs.

It prints figures and PASS/FAIL against the target; it asserts nothing.

Needs PostgreSQL (trust auth) and Redis running, and ``wrk`` on PATH
(Debian/Ubuntu: ``apt-get update && apt-get install -y wrk``). Run from the
repository root:

    .venv/bin/python bench/auth_bench.py
    .venv/bin/python bench/auth_bench.py --devices 500 --duration 20 --rounds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable
HEARTBEAT_PATH = "/api/v1/devices/heartbeat"
# Each device endpoint against GET /health:
# (label, wrk script, its args after the credentials, target ratio).
DEVICE_ENDPOINTS = [
    ("POST heartbeat", "device.lua", ["POST", "/api/v1/devices/heartbeat"], 0.5),
    ("GET pending (empty)", "device.lua", ["GET", "/api/v1/devices/pending"], 0.6),
    ("POST flat metrics (6)", "flat_push.lua", [], 0.3),
]
FLAT_PUSH_SCRIPT, FLAT_PUSH_VALUES = "flat_push.lua", 6
WATCHED_TABLES = ("devices_device", "devices_devicecredential", "devices_event")


# --- Command line ---------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Authenticated heartbeats/s vs GET /health/s (target ratio >= 0.5)."
    )
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--devices", type=int, default=200, help="distinct devices (keys)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating /health + heartbeat rounds"
    )
    parser.add_argument(
        "--settle", type=int, default=2, help="seconds of discarded load per endpoint first"
    )
    parser.add_argument(
        "--retry-uneven",
        type=int,
        default=2,
        help="re-run a wrk run up to this many times when one gunicorn worker got most connections",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument(
        "--asgi",
        action="store_true",
        help="serve homepot.asgi with homepot.web_worker.Worker, as the image does "
        "(--gunicorn-threads becomes WEB_THREADS)",
    )
    parser.add_argument("--gunicorn-threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="DEVICE_KEY_BCRYPT_ROUNDS")
    parser.add_argument(
        "--seed-processes", type=int, default=os.cpu_count() or 2, help="key-creation processes"
    )
    parser.add_argument("--verbose", action="store_true", help="also print wrk's own output")
    args = parser.parse_args()
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    return args


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit(
            "wrk is not on PATH. Install it, e.g. on Debian/Ubuntu:\n"
            "    sudo apt-get update && sudo apt-get install -y wrk\n"
            "(macOS: brew install wrk), then run this script again."
        )
    return path


# --- Database, cache and server environment ---------------------------------------------


def database_name(database_url: str) -> str:
    return urllib.parse.urlsplit(database_url).path.lstrip("/")


def recreate_database(database_url: str) -> None:
    name = database_name(database_url)
    if "bench" not in name:
        sys.exit(f"refusing to drop database {name!r}: its name must contain 'bench'")
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
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="homepot.settings",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DEBUG="false",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEVICE_KEY_BCRYPT_ROUNDS=str(args.bcrypt_rounds),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        WEB_THREADS=str(args.gunicorn_threads),
    )
    return env


def run_step(label: str, command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    print(f"  {label}: {elapsed:.1f}s", flush=True)
    return elapsed


# --- PostgreSQL activity counters ----------------------------------------------------------


@dataclass(frozen=True)
class DbCounters:
    updates: dict[str, int]
    inserts: dict[str, int]
    transactions: int  # xact_commit + xact_rollback of the bench database

    def minus(self, earlier: DbCounters) -> DbCounters:
        return DbCounters(
            updates={t: n - earlier.updates.get(t, 0) for t, n in self.updates.items()},
            inserts={t: n - earlier.inserts.get(t, 0) for t, n in self.inserts.items()},
            transactions=self.transactions - earlier.transactions,
        )


def read_db_counters(database_url: str) -> DbCounters:
    """Cumulative statistics; a backend flushes its own when it exits (or when idle)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, n_tup_upd, n_tup_ins FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [list(WATCHED_TABLES)],
        ).fetchall()
        (transactions,) = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return DbCounters(
        updates={name: upd for name, upd, _ in rows},
        inserts={name: ins for name, _, ins in rows},
        transactions=transactions,
    )


def count_samples(database_url: str) -> int:
    """Raw telemetry rows; counted, not read from statistics (a partitioned
    table keeps its statistics on the partitions)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM analytics_sample").fetchone()[0]


def describe_db(delta: DbCounters) -> str:
    return (
        f"devices_device UPDATEs {delta.updates.get('devices_device', 0)}, "
        f"devices_devicecredential UPDATEs {delta.updates.get('devices_devicecredential', 0)}, "
        f"devices_event INSERTs {delta.inserts.get('devices_event', 0)}, "
        f"transactions {delta.transactions}"
    )


# --- gunicorn ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A gunicorn process group, stopped on exit whatever happens."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.runs: list[WrkResult] = []  # every wrk run against it

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            PYTHON, "-m", "gunicorn", "homepot.wsgi:application",
            "--bind", self.host,
            "--workers", str(self.args.workers),
            "--worker-class", self.args.worker_class,
            "--threads", str(self.args.gunicorn_threads),
            "--log-level", "warning",
        ]  # fmt: skip
        if self.args.asgi:  # as the image runs it: WEB_THREADS is set in the environment
            command[3] = "homepot.asgi:application"
            command[command.index("--worker-class") + 1] = "homepot.web_worker.Worker"
            command += ["--keep-alive", "75"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self._wait_until_healthy()
        self._wait_until_workers_booted()

    def _wait_until_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                if http_request(self.host, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"gunicorn did not answer /health; its log:\n{self.log_tail()}")

    def _wait_until_workers_booted(self, timeout: float = 30.0) -> None:
        """/health answering proves one worker is up; wrk must not start before all are.

        Otherwise the first worker accepts every connection of the first run.
        A worker counts as booted once its CPU time stops growing.
        """
        deadline = time.monotonic() + timeout
        previous: dict[int, int] = {}
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            current = cpu_sample(pids).workers
            if len(pids) >= self.args.workers and current == previous:
                return
            previous = current
            time.sleep(0.5)
        print("  warning: gunicorn workers still busy booting; measuring anyway", flush=True)

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- HTTP: warm-up and diagnostics --------------------------------------------------------------


def http_request(
    host: str, method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def heartbeat_headers(device_id: str, api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Device-ID": device_id, "X-API-Key": api_key}


def load_credentials(path: Path) -> list[tuple[str, str]]:
    pairs = [tuple(line.split("\t", 1)) for line in path.read_text().splitlines() if line]
    return [(device_id, api_key) for device_id, api_key in pairs]


def warm_up(host: str, credentials: list[tuple[str, str]], concurrency: int) -> Counter[int]:
    def one(pair: tuple[str, str]) -> int:
        return http_request(host, "POST", HEARTBEAT_PATH, heartbeat_headers(*pair), "{}")[0]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return Counter(pool.map(one, credentials))


# --- CPU accounting (Linux /proc) -----------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    at: float
    machine_busy: int  # clock ticks, all CPUs
    machine_total: int
    workers: dict[int, int]  # gunicorn worker pid -> utime + stime ticks
    database: dict[int, int]  # PostgreSQL backend pid (of the bench database) -> ticks


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may contain spaces; fields after ")" are fixed.
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _process_stat(int(entry))) and int(stat[1]) == parent:
            children.append(int(entry))
    return sorted(children)


def _ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        if stat := _process_stat(pid):
            ticks[pid] = int(stat[11]) + int(stat[12])  # utime, stime
    return ticks


def database_backends(database: str) -> list[int]:
    """PostgreSQL backends connected to the bench database (found by their title)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read(200)
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            pids.append(int(entry))
    return pids


def cpu_sample(worker_pids: list[int], database: str | None = None) -> CpuSample:
    busy, total = _machine_ticks()
    backends = database_backends(database) if database else []
    return CpuSample(time.monotonic(), busy, total, _ticks(worker_pids), _ticks(backends))


@dataclass(frozen=True)
class CpuUse:
    machine_busy: float  # fraction of all CPUs
    worker_cores: tuple[float, ...]  # cores used by each gunicorn worker, busiest first
    # CPU seconds of the server side: gunicorn workers plus the bench database's backends
    # (a backend that started during the run counts whole). Unlike rates, these hardly
    # change with what else the machine runs.
    server_seconds: float


def cpu_use(before: CpuSample, after: CpuSample) -> CpuUse:
    seconds = max(after.at - before.at, 1e-9)
    total = max(after.machine_total - before.machine_total, 1)
    cores = [
        (after.workers[pid] - before.workers[pid]) / CLOCK_TICKS / seconds
        for pid in before.workers
        if pid in after.workers
    ]
    spent = [
        ticks - earlier.get(pid, 0)
        for now, earlier in ((after.workers, before.workers), (after.database, before.database))
        for pid, ticks in now.items()
    ]
    return CpuUse(
        machine_busy=(after.machine_busy - before.machine_busy) / total,
        worker_cores=tuple(sorted(cores, reverse=True)),
        server_seconds=sum(spent) / CLOCK_TICKS,
    )


# --- wrk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    label: str
    script: str
    requests: int
    duration_us: int
    status_errors: int  # wrk: "Non-2xx or 3xx responses"
    socket_errors: int  # connect + read + write + timeout
    p50_us: int
    p99_us: int
    cpu: CpuUse | None = None
    server_cpu_seconds: float = 0.0  # summed over rounds by combine()

    @property
    def rate(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU (workers + database backends) per request, in milliseconds."""
        return self.server_cpu_seconds * 1000 / self.requests if self.requests else 0.0


def run_wrk(
    wrk: str,
    args: argparse.Namespace,
    server: Server,
    label: str,
    script: str,
    script_args: list[str],
    duration: int | None = None,
) -> WrkResult:
    command = [
        wrk, "-t", str(args.wrk_threads), "-c", str(args.connections),
        "-d", f"{duration or args.duration}s", "--timeout", "10s", "--latency",
        "-s", str(BENCH_DIR / script), f"http://{server.host}", "--", *script_args,
    ]  # fmt: skip
    workers, database = server.worker_pids(), database_name(args.database_url)
    before = cpu_sample(workers, database)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_use(before, cpu_sample(workers, database))
    if args.verbose or result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n")
    marker = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or marker is None:
        sys.exit(f"wrk failed ({result.returncode}) for {label}")
    data = json.loads(marker.removeprefix("WRK_JSON "))
    result = WrkResult(
        label=label,
        script=script,
        requests=data["requests"],
        duration_us=data["duration_us"],
        status_errors=data["status_errors"],
        socket_errors=sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        p50_us=data["p50_us"],
        p99_us=data["p99_us"],
        cpu=cpu,
        server_cpu_seconds=cpu.server_seconds,
    )
    server.runs.append(result)  # also settling and discarded runs: they stored rows too
    return result


def is_uneven(result: WrkResult) -> bool:
    """One gunicorn worker did less than half the work of another."""
    if result.cpu is None or len(result.cpu.worker_cores) < 2:
        return False
    return result.cpu.worker_cores[-1] < 0.5 * result.cpu.worker_cores[0]


def run_balanced(
    wrk: str,
    args: argparse.Namespace,
    server: Server,
    label: str,
    script: str,
    script_args: list[str],
) -> WrkResult:
    """run_wrk, repeated (up to --retry-uneven times) while the workers' load was uneven.

    gunicorn leaves the spreading of connections between workers to whichever
    worker accepts first; with few connections one worker sometimes gets them
    all, and the run then measures one worker instead of the server.
    """
    result = run_wrk(wrk, args, server, label, script, script_args)
    for _ in range(args.retry_uneven):
        if not is_uneven(result):
            break
        cores = "+".join(f"{c:.2f}" for c in result.cpu.worker_cores) if result.cpu else ""
        print(f"  {label}: discarded ({result.rate:.1f} req/s, worker cores {cores})", flush=True)
        result = run_wrk(wrk, args, server, label, script, script_args)
    return result


def combine(label: str, results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        label=label,
        script=results[0].script,
        requests=sum(r.requests for r in results),
        duration_us=sum(r.duration_us for r in results),
        status_errors=sum(r.status_errors for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        p50_us=max(r.p50_us for r in results),  # worst round: percentiles do not add up
        p99_us=max(r.p99_us for r in results),
        cpu=None,
        server_cpu_seconds=sum(r.server_cpu_seconds for r in results),
    )


# --- Report ---------------------------------------------------------------------------------------


def print_table(rows: list[WrkResult]) -> None:
    header = f"{'endpoint':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
    print(f"  {header}{'sock err':>10}{'cpu ms/req':>12}  {'cpu busy':>8}  worker cores")
    for r in rows:
        cpu = ""
        if r.cpu is not None:
            split = "+".join(f"{c:.2f}" for c in r.cpu.worker_cores)
            cpu = f"  {r.cpu.machine_busy:>8.0%}  {split}"
        print(
            f"  {r.label:<28}{r.rate:>10.1f}{r.p50_us / 1000:>9.2f}{r.p99_us / 1000:>9.2f}"
            f"{r.status_errors:>9}{r.socket_errors:>10}{r.cpu_ms:>12.3f}{cpu}"
        )


def print_verdict(
    health: WrkResult, endpoint: WrkResult, target: float, warm_statuses: Counter[int]
) -> None:
    ratio = endpoint.rate / health.rate if health.rate else 0.0
    problems = [
        f"{run.label}: {run.status_errors} non-2xx, {run.socket_errors} socket errors"
        for run in (health, endpoint)
        if run.status_errors or run.socket_errors
    ]
    if set(warm_statuses) != {200}:
        problems.append(f"warm-up statuses were {dict(warm_statuses)}")
    verdict = "PASS" if ratio >= target else "FAIL"
    if problems:
        verdict = "INVALID benchmark: " + "; ".join(problems)
    print(f"  ratio {endpoint.label} / health: {ratio:.3f}  (target >= {target:.2f})  {verdict}")
    if endpoint.cpu_ms:
        print(
            f"    server CPU per request: {endpoint.cpu_ms:.3f} ms vs {health.cpu_ms:.3f} ms "
            f"(health/endpoint {health.cpu_ms / endpoint.cpu_ms:.3f}: the ratio if server CPU "
            "were the only limit)"
        )


def print_imbalance(rows: list[WrkResult]) -> None:
    """gunicorn does not balance keep-alive connections between workers: say when it showed."""
    uneven = [r.label for r in rows if is_uneven(r)]
    if uneven:
        print(
            "  note: uneven load between gunicorn workers (busiest > 2x idlest) in: "
            + ", ".join(uneven)
            + "; wrk's connections were not spread evenly, so those rates understate the server."
        )


def print_flat_push_rows(runs: list[WrkResult], connections: int, before: int, after: int) -> None:
    """Every accepted push (201) must have stored its values: none lost, none twice.

    When wrk stops, up to one request per connection is still in flight: the
    server stores it but wrk never counts its answer, so a few more rows may
    arrive than wrk counted, never fewer."""
    pushes = [r for r in runs if r.script == FLAT_PUSH_SCRIPT]
    accepted = sum(r.requests - r.status_errors for r in pushes)
    expected, stored = accepted * FLAT_PUSH_VALUES, after - before
    in_flight = len(pushes) * connections * FLAT_PUSH_VALUES
    ok = expected <= stored <= expected + in_flight and stored % FLAT_PUSH_VALUES == 0
    print(
        f"  flat push rows: {stored} stored, {expected} expected from {accepted} accepted "
        f"pushes x {FLAT_PUSH_VALUES} values in {len(pushes)} runs (settling included; "
        f"up to {in_flight} more from requests in flight at wrk's end)  "
        + ("OK" if ok else "MISMATCH")
    )


def diagnose(host: str, pair: tuple[str, str]) -> None:
    status, body = http_request(host, "POST", HEARTBEAT_PATH, heartbeat_headers(*pair), "{}")
    print(f"  sample heartbeat for {pair[0]}: HTTP {status} {body[:300]!r}")


# --- Main ---------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> Path:
    print(f"setup (database {database_name(args.database_url)}, redis {args.redis_url}):")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    credentials = workdir / "devices.tsv"
    seed = [
        PYTHON, str(BENCH_DIR / "seed_devices.py"), "--count", str(args.devices),
        "--out", str(credentials), "--processes", str(args.seed_processes),
    ]  # fmt: skip
    run_step(f"register {args.devices} devices (bcrypt cost {args.bcrypt_rounds})", seed, env)
    return credentials


def measure(
    wrk: str, args: argparse.Namespace, server: Server, credentials: Path
) -> dict[str, list[WrkResult]]:
    """Alternate /health and each device endpoint, round after round."""
    scripts = {"GET /health": ("health.lua", [])} | {
        label: (script, [str(credentials), *extra]) for label, script, extra, _ in DEVICE_ENDPOINTS
    }
    if args.settle:  # discarded: first requests of each thread, connection pools
        for label, (script, script_args) in scripts.items():
            run_wrk(wrk, args, server, f"settle {label}", script, script_args, args.settle)
    runs: dict[str, list[WrkResult]] = {label: [] for label in scripts}
    for n in range(1, args.rounds + 1):
        for label, (script, script_args) in scripts.items():
            runs[label].append(
                run_balanced(wrk, args, server, f"{label} (round {n})", script, script_args)
            )
        rates = ", ".join(f"{label} {results[-1].rate:.1f}" for label, results in runs.items())
        print(f"  round {n} (req/s): {rates}", flush=True)
    return runs


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> None:
    env = server_environment(args)
    credentials = prepare(args, env, workdir)
    pairs = load_credentials(credentials)
    server = Server(args, env, workdir / "gunicorn.log")
    try:
        before_warm = read_db_counters(args.database_url)
        server.start()
        started = time.monotonic()
        warm_statuses = warm_up(server.host, pairs, concurrency=args.connections)
        warm_seconds = time.monotonic() - started
        print(
            f"  warm-up: {len(pairs)} heartbeats (one bcrypt check per key) in "
            f"{warm_seconds:.1f}s, statuses {dict(warm_statuses)}"
        )
        server.stop()  # its PostgreSQL backends exit and flush their statistics
        time.sleep(1.0)
        after_warm = read_db_counters(args.database_url)
        samples_before = count_samples(args.database_url)
        server.start()
        print(
            f"\nmeasuring: wrk {args.wrk_threads} threads, {args.connections} connections, "
            f"{args.duration}s per run, {args.rounds} round(s); gunicorn {args.workers} x "
            f"{args.worker_class} ({args.gunicorn_threads} threads); {len(pairs)} devices",
            flush=True,
        )
        runs = measure(wrk, args, server, credentials)
        server.stop()
        time.sleep(1.0)
        after_measure = read_db_counters(args.database_url)
        samples_after = count_samples(args.database_url)
    except Exception:
        print(f"gunicorn log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()

    combined = {label: combine(label, results) for label, results in runs.items()}
    every_run = [run for results in runs.values() for run in results]
    print()
    if args.rounds > 1:
        print_table(every_run)
        print("  all rounds:")
    print_table(list(combined.values()))
    print()
    for label, _, _, target in DEVICE_ENDPOINTS:
        print_verdict(combined["GET /health"], combined[label], target, warm_statuses)
    print_imbalance(every_run)
    measured = after_measure.minus(after_warm)
    device_requests = sum(combined[label].requests for label, *_ in DEVICE_ENDPOINTS)
    print(f"\n  database during warm-up:     {describe_db(after_warm.minus(before_warm))}")
    print(f"  database during measurement: {describe_db(measured)}")
    if device_requests:
        print(
            "  database transactions per device request (heartbeats, polls, pushes together): "
            f"{measured.transactions / device_requests:.4f} over {device_requests} requests"
        )
    print_flat_push_rows(server.runs, args.connections, samples_before, samples_after)
    if any(combined[label].status_errors for label, *_ in DEVICE_ENDPOINTS):
        server.start()
        try:
            diagnose(server.host, pairs[0])
        finally:
            server.stop()


def main() -> None:
    args = parse_args()
    wrk = require_wrk()
    # SIGTERM unwinds like Ctrl-C, so gunicorn is stopped in both cases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="homepot-bench-") as workdir:
        run(args, wrk, Path(workdir))


if __name__ == "__main__":
    main()
