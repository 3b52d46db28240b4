"""Telemetry: HTTP batch ingest rate vs. raw executemany, and series query time.

Targets (from the issue): values ingested per second through
``POST /api/v1/analytics/device-metrics`` at least 30% of what one process
inserts into the same table with psycopg's ``executemany`` at the same
granularity; and a 24-hour series at a 1-minute step answered in under 50 ms
with 10 million raw rows in the table.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_telemetry_bench``), flushes a dedicated Redis DB (default ``/5``),
   migrates, and registers ``--devices`` + 1 devices (bench/seed_devices.py):
   ``--devices`` send telemetry, the extra one is the query target, whose data
   is only the bulk-loaded series;
2. **raw rate**: one process, psycopg 3 ``executemany`` of
   ``INSERT INTO analytics_sample (device_id, metric_id, ts, value) ...
   ON CONFLICT DO NOTHING``, one transaction per ``--samples`` x ``--metrics``
   rows (default 12 x 10 = 120, the size of one HTTP request), for
   ``--raw-seconds``; then, for context, transactions of ``--raw-large-batch``
   rows;
3. **HTTP rate**: gunicorn (default 2 gthread workers x 4 threads, DEBUG off)
   and wrk with bench/ingest.lua: every request one new batch (distinct batch
   id) of one device (cycling through the devices), 12 samples x 10 metrics,
   timestamps within the last few minutes, never repeated per device. First
   one heartbeat per device (each key pays its one bcrypt check) and a
   discarded ``--settle`` run; the measured run is repeated (up to
   ``--retry-uneven`` times) when gunicorn gave one worker nearly all
   connections. Prints values/s (201 responses x 120 / seconds), the ratio to
   the raw rate, and checks on the server that ``analytics_sample`` holds
   exactly 120 rows per recorded batch and that every 201 is a stored batch;
4. **query time**: bulk-loads ``--load-devices`` x ``--metrics`` x
   ``--load-points`` rows at ``--load-interval`` seconds with INSERT ... SELECT
   from generate_series (default 100 x 10 x 10,000 = 10M rows, about 28 hours
   per series up to a few minutes past now), rolls the target device up to
   the last closed minute with the real ``analytics.services.rollup_minutes``
   (or, with ``--rollup all``, the whole table with ``telemetry_rollup()``),
   VACUUM ANALYZE, then times ``GET /api/v1/devices/{id}/metrics`` for the last
   24 hours at step=60 (minute rollups plus the raw tail after the last
   rolled-up minute) and step=10 (raw rows), sequentially over one keep-alive
   connection with a viewer's DRF token.

It prints figures and PASS/FAIL against the targets; it asserts nothing.

Needs PostgreSQL (trust auth) and Redis running, and ``wrk`` on PATH. Run from
the repository root (about 2 minutes on 2 cores with the defaults):

    .venv/bin/python bench/telemetry_bench.py
    .venv/bin/python bench/telemetry_bench.py --duration 30 --connections 32
    .venv/bin/python bench/telemetry_bench.py --skip-query      # ingest rates only
    .venv/bin/python bench/telemetry_bench.py --skip-ingest     # query time only
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from auth_bench import (  # noqa: E402  (bench/ is not a package)
    PYTHON,
    REPO_ROOT,
    CpuUse,
    Server,
    cpu_sample,
    cpu_use,
    database_name,
    flush_redis,
    load_credentials,
    recreate_database,
    require_wrk,
    run_step,
    server_environment,
    warm_up,
)

INGEST_PATH = "/api/v1/analytics/device-metrics"
# Same names, in the same order, as bench/ingest.lua.
METRIC_NAMES = [
    "cpu_percent", "memory_percent", "disk_percent", "network_latency_ms", "transaction_count",
    "transaction_volume", "error_rate", "active_connections", "temperature_c", "fan_rpm",
]  # fmt: skip
TARGET_INGEST_RATIO = 0.30
TARGET_QUERY_MS = 50.0
SAMPLE_INSERT = (
    "INSERT INTO analytics_sample (device_id, metric_id, ts, value)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


# --- Command line ------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Telemetry ingest values/s (HTTP vs raw executemany) and series query time."
    )
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_telemetry_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    group = parser.add_argument_group("ingest")
    group.add_argument("--devices", type=int, default=50, help="devices sending telemetry")
    group.add_argument("--samples", type=int, default=12, help="samples per request")
    group.add_argument("--metrics", type=int, default=10, help="metrics per sample")
    group.add_argument("--duration", type=int, default=20, help="seconds of measured wrk run")
    group.add_argument("--settle", type=int, default=4, help="seconds of discarded wrk run")
    group.add_argument("--connections", type=int, default=16, help="wrk connections")
    group.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    group.add_argument(
        "--retry-uneven",
        type=int,
        default=1,
        help="re-run the measurement up to this many times when one gunicorn worker idled",
    )
    group.add_argument("--raw-seconds", type=float, default=10.0, help="raw executemany run")
    group.add_argument(
        "--raw-large-batch", type=int, default=12000, help="rows per transaction; 0: skip"
    )
    group = parser.add_argument_group("query")
    group.add_argument("--load-devices", type=int, default=100, help="series owners in the load")
    group.add_argument("--load-points", type=int, default=10_000, help="timestamps per series")
    group.add_argument("--load-interval", type=int, default=10, help="seconds between points")
    group.add_argument("--load-jobs", type=int, default=2, help="parallel loading connections")
    group.add_argument(
        "--rollup",
        choices=["target", "all"],
        default="target",
        help="target: rollup_minutes() for the target device; all: telemetry_rollup() (slow)",
    )
    group.add_argument("--queries", type=int, default=50, help="timed requests per query")
    group.add_argument("--warmup", type=int, default=5, help="untimed requests per query first")
    group = parser.add_argument_group("server")
    group.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    group.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    group.add_argument("--gunicorn-threads", type=int, default=4, help="threads per worker")
    group.add_argument("--bcrypt-rounds", type=int, default=12, help="DEVICE_KEY_BCRYPT_ROUNDS")
    group.add_argument(
        "--seed-processes", type=int, default=os.cpu_count() or 2, help="key-creation processes"
    )
    parser.add_argument("--skip-ingest", action="store_true", help="no raw/HTTP ingest rates")
    parser.add_argument("--skip-query", action="store_true", help="no bulk load and queries")
    parser.add_argument("--verbose", action="store_true", help="also print wrk's own output")
    args = parser.parse_args()
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    if args.bcrypt_rounds < 12:
        parser.error("the server runs with DEBUG off, whose settings refuse bcrypt rounds < 12")
    if not 1 <= args.metrics <= len(METRIC_NAMES):
        parser.error(f"--metrics must be 1..{len(METRIC_NAMES)}")
    if args.load_devices < 1 or args.load_points * args.load_interval < 86400 + 3600:
        parser.error("the load must cover at least 25 hours (--load-points x --load-interval)")
    return args


@dataclass(frozen=True)
class Fleet:
    """Registered devices: (pk, public id) of the senders, and the query target."""

    senders: list[tuple[int, str]]
    target: tuple[int, str]
    credentials: Path  # senders only, public id<TAB>api_key


# --- Setup -------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> Fleet:
    print(f"setup (database {database_name(args.database_url)}, redis {args.redis_url}):")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    every = workdir / "devices.tsv"
    count = args.devices + 1
    seed = [
        PYTHON, str(BENCH_DIR / "seed_devices.py"), "--count", str(count),
        "--out", str(every), "--processes", str(args.seed_processes),
    ]  # fmt: skip
    run_step(f"register {count} devices (bcrypt cost {args.bcrypt_rounds})", seed, env)
    lines = sorted(line for line in every.read_text().splitlines() if line)
    credentials = workdir / "senders.tsv"
    credentials.write_text("".join(f"{line}\n" for line in lines[:-1]))
    with psycopg.connect(args.database_url) as conn:
        # devices_device.device_id is the column of Device.public_id
        pks = dict(conn.execute("SELECT device_id, id FROM devices_device").fetchall())
    ids = [line.split("\t", 1)[0] for line in lines]
    return Fleet(
        senders=[(pks[i], i) for i in ids[:-1]],
        target=(pks[ids[-1]], ids[-1]),
        credentials=credentials,
    )


def metric_pks(database_url: str, names: list[str]) -> list[int]:
    """The metric ids of names, created if missing (as the ingest path does)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO analytics_metricname (name) SELECT unnest(%s::text[])"
            " ON CONFLICT (name) DO NOTHING",
            [names],
        )
        ids = dict(
            conn.execute(
                "SELECT name, id FROM analytics_metricname WHERE name = ANY(%s)", [names]
            ).fetchall()
        )
    return [ids[name] for name in names]


def scalar(database_url: str, query: str, params: list | None = None) -> object:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


# --- Raw executemany rate ------------------------------------------------------------------


@dataclass(frozen=True)
class RawResult:
    rows_per_transaction: int
    transactions: int
    rows: int  # rows inserted, counted in the table
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def raw_insert_rate(
    database_url: str,
    device_pks: list[int],
    metrics: list[int],
    samples: int,
    start: datetime,
    seconds: float,
) -> RawResult:
    """One connection, one transaction per batch of samples x metrics rows, for `seconds`.

    Devices take turns like the HTTP run's; each device's timestamps advance by
    1 ms per sample from `start`, so no row conflicts with another.
    """
    step = timedelta(milliseconds=1)
    next_sample = dict.fromkeys(device_pks, 0)
    transactions = 0
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM analytics_sample").fetchone()[0]
        conn.commit()
        cursor = conn.cursor()
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            device = device_pks[transactions % len(device_pks)]
            first = next_sample[device]
            next_sample[device] = first + samples
            rows = [
                (device, metric, start + (first + n) * step, 50.0 + n + metric / 10)
                for n in range(samples)
                for metric in metrics
            ]
            with conn.transaction():
                cursor.executemany(SAMPLE_INSERT, rows)
            transactions += 1
        elapsed = time.perf_counter() - started
        after = conn.execute("SELECT count(*) FROM analytics_sample").fetchone()[0]
    return RawResult(samples * len(metrics), transactions, after - before, elapsed)


# --- HTTP ingest with wrk ------------------------------------------------------------------


@dataclass(frozen=True)
class IngestRun:
    requests: int
    created: int  # 201 responses: one stored batch each
    duplicates: int  # 200 responses: batch id seen before (should be 0)
    other: int  # any other status
    socket_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    values_per_request: int
    cpu: CpuUse

    @property
    def request_rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0

    @property
    def value_rate(self) -> float:
        return self.request_rate * self.values_per_request


@dataclass(frozen=True)
class Lanes:
    """Disjoint timestamp lanes: one per wrk run, so runs never collide."""

    base_ms: int
    total: int
    used: int = 0

    def take(self) -> tuple[int, Lanes]:
        if self.used >= self.total:
            raise RuntimeError("no timestamp lane left")
        return self.used, Lanes(self.base_ms, self.total, self.used + 1)


def run_ingest_wrk(
    wrk: str,
    args: argparse.Namespace,
    server: Server,
    credentials: Path,
    lane: int,
    lanes: Lanes,
    seconds: int,
    tag: str,
) -> IngestRun:
    spacing_ms = 1
    command = [
        wrk, "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{seconds}s",
        "--timeout", "10s", "--latency", "-s", str(BENCH_DIR / "ingest.lua"),
        f"http://{server.host}", "--", str(credentials), str(lanes.base_ms), str(lane),
        str(lanes.total), str(args.wrk_threads), str(args.samples), str(args.metrics),
        str(spacing_ms), tag,
    ]  # fmt: skip
    workers = server.worker_pids()
    before = cpu_sample(workers)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_use(before, cpu_sample(workers))
    if args.verbose or result.returncode != 0 or "HTTP " in result.stderr:
        print(result.stdout, result.stderr, sep="\n")
    marker = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or marker is None:
        sys.exit(f"wrk failed ({result.returncode}) for {tag}")
    data = json.loads(marker.removeprefix("WRK_JSON "))
    return IngestRun(
        requests=data["requests"],
        created=data["created"],
        duplicates=data["duplicates"],
        other=data["other"],
        socket_errors=sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        values_per_request=args.samples * args.metrics,
        cpu=cpu,
    )


def uneven(run: IngestRun) -> bool:
    cores = run.cpu.worker_cores
    return len(cores) >= 2 and cores[-1] < 0.5 * cores[0]


def describe_run(label: str, run: IngestRun) -> str:
    cores = "+".join(f"{c:.2f}" for c in run.cpu.worker_cores)
    return (
        f"{label}: {run.requests} requests in {run.seconds:.1f}s, {run.request_rate:.1f} req/s"
        f" = {run.value_rate:,.0f} values/s; 201: {run.created}, 200 (duplicate):"
        f" {run.duplicates}, other non-2xx: {run.other}, socket errors: {run.socket_errors};"
        f" p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms;"
        f" cpu busy {run.cpu.machine_busy:.0%}, worker cores {cores}"
    )


@dataclass(frozen=True)
class IngestCheck:
    rows: int  # analytics_sample rows in the HTTP lanes' time range
    batches: int  # analytics_ingestbatch rows
    value_count: int  # sum of their value_count
    backlog: int  # analytics_rollupbacklog rows (late samples): expected 0
    latest: int  # analytics_latestvalue rows


def check_ingest(database_url: str, since: datetime) -> IngestCheck:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM analytics_sample WHERE ts >= %s", [since]
        ).fetchone()[0]
        batches, values = conn.execute(
            "SELECT count(*), coalesce(sum(value_count), 0) FROM analytics_ingestbatch"
        ).fetchone()
        backlog = conn.execute("SELECT count(*) FROM analytics_rollupbacklog").fetchone()[0]
        latest = conn.execute("SELECT count(*) FROM analytics_latestvalue").fetchone()[0]
    return IngestCheck(rows, batches, values, backlog, latest)


@dataclass(frozen=True)
class HttpIngest:
    measured: IngestRun
    created: int  # 201 responses over every wrk run, the discarded ones included
    runs: int  # wrk runs against the table


def measure_http_ingest(
    wrk: str, args: argparse.Namespace, env: dict[str, str], fleet: Fleet, workdir: Path
) -> HttpIngest:
    now_ms = int(time.time() * 1000)
    lanes = Lanes(base_ms=now_ms - 120_000, total=2 + args.retry_uneven)
    server = Server(args, env, workdir / "gunicorn-ingest.log")
    created = 0
    try:
        server.start()
        # One heartbeat per device first: each key pays its one bcrypt check here.
        started = time.monotonic()
        statuses = warm_up(server.host, load_credentials(fleet.credentials), args.connections)
        print(
            f"  warm-up: {sum(statuses.values())} heartbeats in {time.monotonic() - started:.1f}s,"
            f" statuses {dict(statuses)}",
            flush=True,
        )
        lane, lanes = lanes.take()
        settle = run_ingest_wrk(
            wrk, args, server, fleet.credentials, lane, lanes, args.settle, f"s{lane}"
        )
        created += settle.created
        print("  " + describe_run("settle (discarded)", settle), flush=True)
        while True:
            lane, lanes = lanes.take()
            run = run_ingest_wrk(
                wrk, args, server, fleet.credentials, lane, lanes, args.duration, f"m{lane}"
            )
            created += run.created
            if not uneven(run) or lanes.used == lanes.total:
                break
            print("  " + describe_run("discarded, uneven workers", run), flush=True)
    except Exception:
        print(f"gunicorn log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()  # in-flight requests finish before the workers exit
    print("  " + describe_run("measured", run), flush=True)
    return HttpIngest(run, created, lanes.used)


# --- Bulk load, rollup, queries -----------------------------------------------------------


def bulk_load(
    database_url: str,
    device_pks: list[int],
    metrics: list[int],
    points: int,
    interval: int,
    end: datetime,
    jobs: int,
) -> float:
    """points rows per (device, metric) at `interval` seconds ending at `end`;
    one INSERT ... SELECT per device, `jobs` connections in parallel. Seconds taken."""
    start = end - timedelta(seconds=(points - 1) * interval)
    statement = (
        "INSERT INTO analytics_sample (device_id, metric_id, ts, value)"
        " SELECT %(device)s, m.id, %(start)s + make_interval(secs => i * %(interval)s),"
        "        50 + 25 * sin(i / 60.0) + mod(m.id, 7)"
        " FROM unnest(%(metrics)s::int[]) WITH ORDINALITY AS m(id, n),"
        "      generate_series(0, %(last)s) AS i"
        " ORDER BY m.n, i"
        " ON CONFLICT DO NOTHING"
    )
    todo: queue.Queue[int] = queue.Queue()
    for device in device_pks:
        todo.put(device)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                while True:
                    try:
                        device = todo.get_nowait()
                    except queue.Empty:
                        return
                    conn.execute(
                        statement,
                        {
                            "device": device,
                            "start": start,
                            "interval": interval,
                            "metrics": metrics,
                            "last": points - 1,
                        },
                    )
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.monotonic() - started


def run_django(label: str, code: str, env: dict[str, str]) -> tuple[str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip(), elapsed


def rollup(args: argparse.Namespace, env: dict[str, str], device_pk: int, start: datetime) -> None:
    if args.rollup == "all":
        code = "from analytics.services import telemetry_rollup\nprint(telemetry_rollup())\n"
    else:
        code = (
            "from datetime import datetime\n"
            "from django.utils import timezone\n"
            "from analytics.services import MINUTE, _floor, rollup_minutes\n"
            f"start = datetime.fromisoformat({start.isoformat()!r})\n"
            "end = _floor(timezone.now(), MINUTE)\n"
            f"print(rollup_minutes(start=start, end=end, device_pk={device_pk}), 'minutes,',"
            " 'up to', end.isoformat())\n"
        )
    output, seconds = run_django("rollup", code, env)
    print(f"  rollup ({args.rollup}): {output} in {seconds:.1f}s", flush=True)


def viewer_token(env: dict[str, str]) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", "homepot_user", "bench", "--role", "viewer", "--token"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    match = re.search(r"Authorization: Token (\S+?)'", result.stdout)
    if result.returncode != 0 or match is None:
        sys.exit(f"homepot_user failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return match.group(1)


def iso_z(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class QueryTimes:
    label: str
    times_ms: list[float]
    points: int
    source: str

    def percentile(self, p: float) -> float:
        ordered = sorted(self.times_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def time_series_query(
    host: str,
    token: str,
    public_id: str,
    name: str,
    step: int,
    warmup: int,
    count: int,
) -> QueryTimes:
    """Sequential GETs over one keep-alive connection; the window ends at each request's now."""
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    conn = http.client.HTTPConnection(host, timeout=60)
    times, points, source = [], 0, ""
    try:
        for n in range(warmup + count):
            end = datetime.now(UTC)
            query = urllib.parse.urlencode(
                {
                    "name": name,
                    "start": iso_z(end - timedelta(hours=24)),
                    "end": iso_z(end),
                    "step": step,
                    "agg": "avg",
                }
            )
            started = time.perf_counter()
            conn.request("GET", f"/api/v1/devices/{public_id}/metrics?{query}", headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                sys.exit(f"series query answered {response.status}: {body[:300]!r}")
            if n >= warmup:
                times.append(elapsed)
            data = json.loads(body)
            points, source = len(data["points"]), data["source"]
    finally:
        conn.close()
    return QueryTimes(f"step={step}", times, points, source)


def describe_query(q: QueryTimes) -> str:
    return (
        f"{q.label:<8} source {q.source:<6} {q.points:>5} points; {len(q.times_ms)} requests:"
        f" p50 {q.percentile(50):.1f} ms, p95 {q.percentile(95):.1f} ms,"
        f" max {max(q.times_ms):.1f} ms"
    )


@dataclass(frozen=True)
class TableFacts:
    rows: int
    total_bytes: int
    target_raw_24h: int
    minute_rollups: int


def table_facts(database_url: str, device_pk: int, metric_pk: int) -> TableFacts:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM analytics_sample").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('analytics_sample')").fetchone()[0]
        raw = conn.execute(
            "SELECT count(*) FROM analytics_sample WHERE device_id = %s AND metric_id = %s"
            " AND ts >= now() - interval '24 hours' AND ts < now()",
            [device_pk, metric_pk],
        ).fetchone()[0]
        minutes = conn.execute("SELECT count(*) FROM analytics_rollupminute").fetchone()[0]
    return TableFacts(rows, size, raw, minutes)


def measure_queries(
    args: argparse.Namespace, env: dict[str, str], fleet: Fleet, metrics: list[int], workdir: Path
) -> tuple[QueryTimes, QueryTimes]:
    pks = [fleet.target[0], *(pk for pk, _ in fleet.senders)][: args.load_devices]
    top = max(pk for pk, _ in [*fleet.senders, fleet.target])
    # Owners without a device row: the foreign key has no constraint, and
    # nothing here reads those devices; only their rows' share of the table counts.
    pks += list(range(top + 1, top + 1 + args.load_devices - len(pks)))
    # A few minutes past now, so the 24 hours before every query are all there.
    end = datetime.fromtimestamp(
        (int(time.time()) // args.load_interval + 60) * args.load_interval, tz=UTC
    )
    rows = len(pks) * len(metrics) * args.load_points
    print(
        f"  loading {len(pks)} devices x {len(metrics)} metrics x {args.load_points} points"
        f" = {rows:,} rows ({args.load_interval}s apart, up to {end:%H:%M:%S}Z)...",
        flush=True,
    )
    seconds = bulk_load(
        args.database_url, pks, metrics, args.load_points, args.load_interval, end,
        args.load_jobs,
    )  # fmt: skip
    print(f"  bulk load: {seconds:.1f}s ({rows / seconds:,.0f} rows/s)", flush=True)
    load_start = end - timedelta(seconds=(args.load_points - 1) * args.load_interval)
    rollup(args, env, fleet.target[0], load_start)
    started = time.monotonic()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"  VACUUM ANALYZE: {time.monotonic() - started:.1f}s", flush=True)
    token = viewer_token(env)
    server = Server(args, env, workdir / "gunicorn-query.log")
    try:
        server.start()
        public_id, name = fleet.target[1], METRIC_NAMES[0]
        minute = time_series_query(
            server.host, token, public_id, name, 60, args.warmup, args.queries
        )
        raw = time_series_query(server.host, token, public_id, name, 10, args.warmup, args.queries)
    except Exception:
        print(f"gunicorn log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return minute, raw


# --- Report ----------------------------------------------------------------------------------


def print_ingest_report(
    raw: RawResult,
    large: RawResult | None,
    ingest: HttpIngest,
    check: IngestCheck,
    connections: int,
) -> None:
    http, created = ingest.measured, ingest.created
    per_request = http.values_per_request
    print("\ningest (values = rows of analytics_sample):")
    print(
        f"  raw executemany, {raw.rows_per_transaction} rows/transaction: {raw.rate:,.0f} rows/s"
        f" ({raw.transactions} transactions, {raw.rows:,} rows in {raw.seconds:.1f}s)"
    )
    if large is not None:
        print(
            f"  raw executemany, {large.rows_per_transaction} rows/transaction (context):"
            f" {large.rate:,.0f} rows/s ({large.rows:,} rows in {large.seconds:.1f}s)"
        )
    ratio = http.value_rate / raw.rate if raw.rate else 0.0
    print(
        f"  HTTP ingest, {per_request} values/request: {http.value_rate:,.0f} values/s"
        f" ({http.request_rate:.1f} req/s, p50 {http.p50_ms:.1f} ms, p99 {http.p99_ms:.1f} ms)"
    )
    print(
        f"  ratio HTTP/raw: {ratio:.3f}  (target >= {TARGET_INGEST_RATIO:.2f})"
        f"  -> {'PASS' if ratio >= TARGET_INGEST_RATIO else 'FAIL'}"
    )
    problems = []
    if http.other or http.duplicates or http.socket_errors:
        problems.append(
            f"measured run: {http.other} non-2xx, {http.duplicates} duplicates,"
            f" {http.socket_errors} socket errors"
        )
    if check.rows != per_request * check.batches or check.value_count != check.rows:
        problems.append(
            f"table holds {check.rows} HTTP rows for {check.batches} batches"
            f" (expected {per_request * check.batches})"
        )
    # wrk stops with up to one request per connection in flight, which the
    # server still stores: it never counts their answers.
    if not 0 <= check.batches - created <= connections * ingest.runs:
        problems.append(f"{check.batches} batches stored but {created} answered 201")
    print(
        f"  server check: analytics_sample holds {check.rows:,} rows from HTTP ="
        f" {per_request} x {check.batches} stored batches"
        f" ({'equal' if check.rows == per_request * check.batches else 'NOT equal'});"
        f" wrk saw {created} x 201 over its {ingest.runs} runs (+{check.batches - created}"
        f" in flight at wrk's stops); latest values {check.latest};"
        f" rollup backlog entries {check.backlog}"
    )
    if problems:
        print("  INVALID: " + "; ".join(problems))


def print_query_report(facts: TableFacts, minute: QueryTimes, raw: QueryTimes) -> None:
    print("\nquery (GET /api/v1/devices/{id}/metrics, last 24 hours, agg=avg):")
    print(
        f"  analytics_sample: {facts.rows:,} rows, {facts.total_bytes / 2**20:,.0f} MiB"
        f" (pg_total_relation_size); target series: {facts.target_raw_24h} raw rows in the"
        f" last 24 h; analytics_rollupminute: {facts.minute_rollups:,} rows"
    )
    print(f"  {describe_query(minute)}")
    print(f"  {describe_query(raw)}  (context)")
    p95 = minute.percentile(95)
    print(
        f"  step=60 p95 {p95:.1f} ms (target < {TARGET_QUERY_MS:.0f} ms)"
        f"  -> {'PASS' if p95 < TARGET_QUERY_MS else 'FAIL'}"
    )


# --- Main ------------------------------------------------------------------------------------


def run_ingest(
    wrk: str, args: argparse.Namespace, env: dict[str, str], fleet: Fleet, metrics: list[int],
    workdir: Path,
) -> None:  # fmt: skip
    samples = args.samples
    raw_start = datetime.now(UTC) - timedelta(hours=2)
    device_pks = [pk for pk, _ in fleet.senders]
    print(f"\nraw executemany ({args.raw_seconds:.0f}s, one process)...", flush=True)
    raw = raw_insert_rate(
        args.database_url, device_pks, metrics, samples, raw_start, args.raw_seconds
    )
    large = None
    if args.raw_large_batch:
        per_txn = max(1, args.raw_large_batch // len(metrics))
        large = raw_insert_rate(
            args.database_url, device_pks, metrics, per_txn,
            raw_start + timedelta(minutes=30), max(3.0, args.raw_seconds / 2),
        )  # fmt: skip
    print(
        f"\nHTTP ingest (POST {INGEST_PATH}): wrk {args.wrk_threads} threads,"
        f" {args.connections} connections,"
        f" {args.duration}s; gunicorn {args.workers} x {args.worker_class}"
        f" ({args.gunicorn_threads} threads); {len(fleet.senders)} devices;"
        f" {samples} samples x {len(metrics)} metrics per request",
        flush=True,
    )
    ingest = measure_http_ingest(wrk, args, env, fleet, workdir)
    check = check_ingest(args.database_url, datetime.now(UTC) - timedelta(minutes=30))
    print_ingest_report(raw, large, ingest, check, args.connections)


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> None:
    env = server_environment(args)
    fleet = prepare(args, env, workdir)
    metrics = metric_pks(args.database_url, METRIC_NAMES[: args.metrics])
    if not args.skip_ingest:
        run_ingest(wrk, args, env, fleet, metrics, workdir)
    if not args.skip_query:
        print("\nquery setup:", flush=True)
        minute, raw = measure_queries(args, env, fleet, metrics, workdir)
        facts = table_facts(args.database_url, fleet.target[0], metrics[0])
        print_query_report(facts, minute, raw)


def main() -> None:
    args = parse_args()
    wrk = require_wrk()
    # SIGTERM unwinds like Ctrl-C, so gunicorn is stopped in both cases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="homepot-telemetry-bench-") as workdir:
        run(args, wrk, Path(workdir))
    print(f"\ntotal {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
