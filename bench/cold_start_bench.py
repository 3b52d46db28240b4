"""Cold start: a whole fleet's first requests against an empty Redis.

Target (issue 15): with 10,000 enrolled devices and an empty Redis, every
device is authenticated again within 10 minutes while ``/health`` and
operators' API calls keep p99 under 250 ms.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_coldstart_bench``) and flushes a dedicated Redis DB (``/11``);
   migrates, registers ``--devices`` devices (bench/seed_devices.py) and an
   operator with an API token;
2. phase "hmac": every key in the HMAC form, as every key is after its first
   use under this release. Redis flushed, gunicorn restarted (no process
   memory either), then every device's first heartbeat at once (``--clients``
   threads; a 503 is retried after its Retry-After, with jitter, as the agent
   does) while a prober calls ``GET /health``, an operator's
   ``GET /api/v1/devices/<id>`` and ``GET /api/v1/devices?page_size=50``
   (token auth) in turn;
3. phase "legacy": the keys of ``--legacy`` devices re-stored as bcrypt at
   production cost 12 (how keys were stored before), the same cold start for
   the whole fleet. Hashing 10,000 keys at cost 12 takes the seeding ~50
   minutes on this box, so the legacy phase runs a stated smaller number and
   the script extrapolates the time for all 10,000 from the measured
   per-check cost and the bound on concurrent checks (workers x
   DEVICE_AUTH_BCRYPT_CONCURRENCY, at most the cores);
4. prints per phase: time until every device was authenticated, 503s, the
   prober's p50/p99 per call, the server's CPU-seconds, and PASS/FAIL
   against the target. It asserts nothing.

The load generator runs on the same cores as the server: figures are
conservative, and noisy while other work runs on the machine.

    .venv/bin/python bench/cold_start_bench.py
    .venv/bin/python bench/cold_start_bench.py --devices 2000 --legacy 100
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from auth_bench import (  # noqa: E402 (the bench directory is not a package)
    child_pids,
    flush_redis,
    free_port,
    recreate_database,
    run_step,
)

PYTHON = sys.executable
HEARTBEAT_PATH = "/api/v1/devices/heartbeat"
TARGET_SECONDS, TARGET_P99_MS = 600, 250


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--legacy", type=int, default=300, help="devices with bcrypt-12 keys")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/homepot_coldstart_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (the image: 3)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (the image: 4)")
    parser.add_argument("--bcrypt-concurrency", type=int, default=1)
    parser.add_argument("--clients", type=int, default=64, help="concurrent device clients")
    parser.add_argument(
        "--spread",
        type=float,
        default=60.0,
        help="seconds over which the devices' first requests arrive (the agents' push "
        "interval and back-off cap are 60 s); 0: all at once, a closed-loop herd",
    )
    parser.add_argument("--probe-pause", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--skip-hmac", action="store_true", help="only the legacy phase")
    return parser.parse_args()


# --- Setup ---------------------------------------------------------------------------------------


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="homepot.settings",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DEBUG="false",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
        DEVICE_KEY_HASH_KEY="bench-device-key-hash-key-not-for-production-0123",
        DEVICE_AUTH_BCRYPT_CONCURRENCY=str(args.bcrypt_concurrency),
        DEVICE_KEY_BCRYPT_ROUNDS="12",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def operator_token(env: dict[str, str]) -> str:
    command = [PYTHON, "manage.py", "homepot_user", "bench-op", "--role", "operator"]
    result = subprocess.run(
        [*command, "--token-only"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"homepot_user failed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def bcrypt_check_seconds(samples: int = 5) -> float:
    """What one bcrypt-12 check costs on this machine (median of a few)."""
    import bcrypt

    hashed = bcrypt.hashpw(b"x" * 43, bcrypt.gensalt(12))
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        bcrypt.checkpw(b"x" * 43, hashed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def store_as_legacy(database_url: str, devices: list[tuple[str, str]]) -> None:
    """Re-store these devices' keys as HOMEPOT stored them before: bcrypt, cost 12
    (the call devices.keys.legacy_bcrypt_hash makes; threads: bcrypt frees the GIL)."""
    import bcrypt

    def legacy_row(pair: tuple[str, str]) -> tuple[str, str]:
        secret = pair[1].split("_", 2)[2]
        return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(12)).decode(), pair[0]

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        rows = list(pool.map(legacy_row, devices))
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE devices_devicecredential SET key_hash = %s WHERE device_id ="
            " (SELECT id FROM devices_device WHERE device_id = %s)",
            rows,
        )


def count_legacy(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        sql = "SELECT count(*) FROM devices_devicecredential WHERE key_hash LIKE '$2%%'"
        return conn.execute(sql).fetchone()[0]


# --- gunicorn ------------------------------------------------------------------------------------


class Server:
    """gunicorn as the image runs it (gthread), in its own process group."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            PYTHON, "-m", "gunicorn", "homepot.wsgi:application", "--bind", self.host,
            "--workers", str(self.args.workers), "--worker-class", "gthread",
            "--threads", str(self.args.threads), "--backlog", "4096", "--log-level", "warning",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(child_pids(self.process.pid)) >= self.args.workers and self._healthy():
                time.sleep(2)  # every worker done importing
                return
            time.sleep(0.3)
        self.stop()
        sys.exit(f"gunicorn did not start; see {self.log}")

    def _healthy(self) -> bool:
        try:
            return request(self.host, "GET", "/health")[0] == 200
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """utime + stime of the workers so far."""
        ticks = 0
        for pid in child_pids(self.process.pid) if self.process else []:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(stat[11]) + int(stat[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def request(
    host: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str = "",
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str]]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        if own:
            conn.close()


# --- The fleet's first requests ------------------------------------------------------------------


@dataclass
class FleetResult:
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    done_at: dict[str, float] = field(default_factory=dict)  # device -> seconds from start


def run_fleet(
    host: str, devices: list[tuple[str, str]], clients: int, spread: float
) -> FleetResult:
    """Every device's heartbeat until accepted, the first at a random moment in
    [0, spread) s; a 503 comes back after its Retry-After x [1, 1.5) (the agent
    waits at least Retry-After too)."""
    due: queue.PriorityQueue[tuple[float, int, str, str]] = queue.PriorityQueue()
    order = itertools.count()
    started = time.monotonic()
    for device_id, api_key in devices:
        due.put((started + random.uniform(0, spread), next(order), device_id, api_key))
    result, lock = FleetResult(), threading.Lock()
    left = [len(devices)]

    def client() -> None:
        conn = http.client.HTTPConnection(host, timeout=60)
        while True:
            with lock:
                if left[0] == 0:
                    break
            try:
                ready, _, device_id, api_key = due.get(timeout=0.2)
            except queue.Empty:
                continue
            time.sleep(max(0.0, ready - time.monotonic()))
            headers = {"Content-Type": "application/json", "X-Device-ID": device_id}
            headers["X-API-Key"] = api_key
            try:
                status, answer = request(host, "POST", HEARTBEAT_PATH, headers, "{}", conn)
            except (OSError, http.client.HTTPException):
                # The server closed the idle keep-alive connection: once more, on a new one.
                conn.close()
                conn = http.client.HTTPConnection(host, timeout=60)
                try:
                    status, answer = request(host, "POST", HEARTBEAT_PATH, headers, "{}", conn)
                except (OSError, http.client.HTTPException):
                    status, answer = 0, {}
            with lock:
                result.statuses[status] += 1
            if status == 200:
                with lock:
                    result.done_at[device_id] = time.monotonic() - started
                    left[0] -= 1
                continue
            wait = float(answer.get("retry-after", "1")) * random.uniform(1.0, 1.5)
            due.put((time.monotonic() + wait, next(order), device_id, api_key))
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


class Prober:
    """GET /health and two operator calls in turn until stopped; latencies in ms."""

    def __init__(self, host: str, token: str, device_id: str, pause: float) -> None:
        auth = {"Authorization": f"Token {token}"}
        self.calls = [
            ("GET /health", "/health", {}),
            ("GET device (operator)", f"/api/v1/devices/{device_id}", auth),
            ("GET device list (operator)", "/api/v1/devices?page_size=50", auth),
        ]
        self.host, self.pause = host, pause
        self.latencies: dict[str, list[float]] = {label: [] for label, _, _ in self.calls}
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for label, path, headers in itertools.cycle(self.calls):
            if self._stop.is_set():
                return
            started = time.perf_counter()
            try:
                status, _ = request(self.host, "GET", path, headers)
            except OSError:
                status = 0
            self.latencies[label].append((time.perf_counter() - started) * 1000)
            if status != 200:
                self.errors[f"{label}: {status}"] += 1
            time.sleep(self.pause)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# --- Phases --------------------------------------------------------------------------------------


def cold_start(
    args: argparse.Namespace, server: Server, devices: list[tuple[str, str]], token: str
) -> tuple[FleetResult, Prober, float]:
    """Empty Redis, fresh processes, then the whole fleet at once."""
    server.stop()
    flush_redis(args.redis_url)
    server.start()
    cpu_before = server.cpu_seconds()
    with Prober(server.host, token, devices[0][0], args.probe_pause) as prober:
        fleet = run_fleet(server.host, devices, args.clients, args.spread)
    return fleet, prober, server.cpu_seconds() - cpu_before


def report(
    args: argparse.Namespace,
    name: str,
    fleet: FleetResult,
    prober: Prober,
    cpu: float,
    devices: int,
) -> dict[str, object]:
    busy = fleet.statuses.get(503, 0)
    print(f"\n== phase {name}: {devices} devices, empty Redis, fresh server processes")
    print(f"  first requests spread over {args.spread:.0f} s, {args.clients} client threads")
    print(f"  all authenticated after {fleet.seconds:.1f} s; answers {dict(fleet.statuses)}")
    print(f"  503 auth_busy answers: {busy}; server worker CPU: {cpu:.1f} s")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"  machine load average now (1/5/15 min): {load} on {os.cpu_count()} cores")
    worst = 0.0
    for label, values in prober.latencies.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        worst = max(worst, p99)
        print(f"  {label:28s} n={len(values):5d}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    if prober.errors:
        print(f"  prober errors: {dict(prober.errors)}")
    ok = fleet.seconds <= TARGET_SECONDS and worst < TARGET_P99_MS and not prober.errors
    print(
        f"  target: all within {TARGET_SECONDS} s and every p99 < {TARGET_P99_MS} ms: "
        + ("PASS" if ok else "FAIL")
    )
    return {"seconds": fleet.seconds, "busy": busy, "cpu": cpu, "worst_p99_ms": worst}


def extrapolate(args: argparse.Namespace, per_check: float, legacy_seconds: float) -> None:
    """10,000 legacy keys: each costs one bcrypt check, at most `bound` at once."""
    bound = min(args.workers * args.bcrypt_concurrency, os.cpu_count() or 1)
    estimate = args.devices * per_check / bound
    print(
        f"\n== legacy keys, extrapolated: one bcrypt-12 check took {per_check * 1000:.0f} ms here; "
        f"{args.devices} legacy keys at most {bound} at once (workers x "
        f"DEVICE_AUTH_BCRYPT_CONCURRENCY, at most the cores): about {estimate / 60:.0f} min "
        f"of migration, once per key ever (measured for {args.legacy}: "
        f"{legacy_seconds:.0f} s). After it, every cold start is the 'hmac' phase."
    )


def legacy_phase(
    args: argparse.Namespace, server: Server, devices: list[tuple[str, str]], token: str
) -> dict[str, object]:
    """The cold start with --legacy keys stored as bcrypt-12, as before this release."""
    legacy = random.Random(15).sample(devices, args.legacy)
    store_as_legacy(args.database_url, legacy)
    per_check = bcrypt_check_seconds()
    print(f"\n  {args.legacy} keys re-stored as bcrypt-12 ({per_check * 1000:.0f} ms a check)")
    fleet, prober, cpu = cold_start(args, server, devices, token)
    name = f"legacy ({args.legacy} of them bcrypt-12)"
    result = report(args, name, fleet, prober, cpu, len(devices))
    legacy_ids = {device_id for device_id, _ in legacy}
    last_legacy = max(t for d, t in fleet.done_at.items() if d in legacy_ids)
    last_hmac = max((t for d, t in fleet.done_at.items() if d not in legacy_ids), default=0)
    print(f"  last HMAC-key device in at {last_hmac:.1f} s, last legacy at {last_legacy:.1f} s")
    print(f"  bcrypt hashes left in the database: {count_legacy(args.database_url)}")
    extrapolate(args, per_check, last_legacy)
    return result


def main() -> None:
    args = parse_args()
    env = server_environment(args)
    work = Path(tempfile.mkdtemp(prefix="cold-start-bench-"))
    keys_path, log = work / "devices.tsv", work / "gunicorn.log"
    print(f"cold-start bench: {args.devices} devices, {args.legacy} legacy; files in {work}")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--noinput"], env)
    seed = [PYTHON, "bench/seed_devices.py", "--count", str(args.devices), "--out", str(keys_path)]
    run_step(f"register {args.devices} devices (HMAC keys)", seed, env)
    devices = [tuple(line.split("\t")) for line in keys_path.read_text().splitlines()]
    token = operator_token(env)
    server = Server(args, env, log)
    results: dict[str, object] = {}
    try:
        if not args.skip_hmac:
            fleet, prober, cpu = cold_start(args, server, devices, token)
            results["hmac"] = report(args, "hmac", fleet, prober, cpu, len(devices))
        if args.legacy:
            results["legacy"] = legacy_phase(args, server, devices, token)
        print(f"\nRESULTS {json.dumps(results)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
