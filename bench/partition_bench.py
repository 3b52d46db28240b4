"""Raw telemetry partitioned by day vs. the plain table (PostgreSQL).

Targets (issue 15 item 5): a 24-hour series of one device and metric answered
in under 50 ms with a month of raw rows; retention drops a whole day instead
of deleting its rows.

What it does:

1. two dedicated databases, dropped and re-created: ``homepot_partition_bench``
   (migrated: analytics_sample partitioned by day; the migration's empty
   legacy partition is dropped and the daily partitions of the last
   ``--days`` days are made with ``partitions_ensure``, as beat would have
   made them) and ``homepot_partition_bench_plain`` (migrated back to
   analytics 0004: the plain table with its primary key and BRIN index);
2. the same rows in both, with INSERT ... SELECT from generate_series, one
   statement per day: ``--devices`` x ``--metrics`` series, one point every
   ``--interval`` seconds from ``--days`` days ago (midnight UTC) up to now
   (default 40 x 2 x 8,640 a day over 30 days and a part: about 21M rows),
   then VACUUM ANALYZE;
3. **query**: the raw 24-hour SELECT of one device and metric alone
   (psycopg: its plan, planning time, p50/p99), then
   ``analytics.queries.metric_series`` (what ``GET
   /api/v1/devices/{id}/metrics`` calls) for the last 24 hours at step=10
   (8,640 raw rows through Django) and step=60 (minute rollups of the last day,
   made first with the real ``rollup_minutes``, plus the raw tail), cycling
   through the devices; p50/p99 of ``--queries`` timed calls after
   ``--warmup``;
4. **prune**: the oldest day goes: on the partitioned table
   ``partitions_drop_expired`` (it counts the day's rows, then DROP TABLE),
   on the plain table the DELETE ``telemetry_prune`` runs there
   (``DELETE ... WHERE ts < end of that day``), each timed.

It prints figures and PASS/FAIL against the 50 ms target (at step=60, the
API's default); it asserts nothing.
Figures are noisy on a shared machine. Needs PostgreSQL (trust auth). Run from
the repository root (about 5 minutes on 2 cores with the defaults):

    .venv/bin/python bench/partition_bench.py
    .venv/bin/python bench/partition_bench.py --devices 10 --days 7   # a quick look
    .venv/bin/python bench/partition_bench.py --reuse   # the queries again, same data
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAY = timedelta(days=1)
PARTITIONED, PLAIN = "partitioned", "plain"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL")
    parser.add_argument("--db", default="homepot_partition_bench", help="database name prefix")
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--metrics", type=int, default=2)
    parser.add_argument("--interval", type=int, default=10, help="seconds between points")
    parser.add_argument("--days", type=int, default=30, help="whole days before today")
    parser.add_argument("--jobs", type=int, default=2, help="loading connections per table")
    parser.add_argument("--queries", type=int, default=200, help="timed calls per step")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--reuse", action="store_true", help="time the queries again on the loaded databases"
    )
    # internal: one phase run under Django against one database, JSON on stdout
    parser.add_argument("--phase", choices=["partitions", "query", "drop"], help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    return parser.parse_args()


def database_url(args: argparse.Namespace, layout: str) -> str:
    name = args.db if layout == PARTITIONED else f"{args.db}_plain"
    return f"{args.pg}/{name}"


def manage(url: str, *command: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "true"}
    env.pop("REDIS_URL", None)
    subprocess.run(
        [PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


def phase(args: argparse.Namespace, layout: str, name: str, now: datetime, **env: str) -> dict:
    """Run one phase of this script under Django against the layout's database."""
    command = [PYTHON, __file__, "--phase", name, "--now", now.isoformat()]
    command += [f"--{k}={getattr(args, k)}" for k in ("devices", "metrics", "queries", "warmup")]
    command += [f"--days={args.days}"]
    full_env = {**os.environ, "DATABASE_URL": database_url(args, layout), "DEBUG": "true", **env}
    full_env.pop("REDIS_URL", None)
    out = subprocess.run(
        command, cwd=ROOT, env=full_env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- Setting up -----------------------------------------------------------------------------------


def create(args: argparse.Namespace, layout: str, now: datetime) -> None:
    url = database_url(args, layout)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    manage(url, "migrate", "--verbosity", "0")
    if layout == PLAIN:
        manage(url, "migrate", "analytics", "0004_alerting", "--verbosity", "0")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE analytics_sample_legacy")  # empty: a fresh install
        # as beat would have made them, day by day, over the last --days days
        phase(args, layout, "partitions", now, TELEMETRY_PARTITIONS_AHEAD=str(args.days + 2))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO analytics_metricname (id, name)"
            " SELECT m, 'bench.m' || m FROM generate_series(1, %s) m",
            [args.metrics],
        )


def load(args: argparse.Namespace, layout: str, first: datetime, now: datetime) -> float:
    url = database_url(args, layout)
    day_starts = []
    day = first
    while day < now:
        day_starts.append(day)
        day += DAY

    def load_day(start: datetime) -> None:
        end = min(start + DAY, now)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO analytics_sample (device_id, metric_id, ts, value)"
                " SELECT d, m, ts, random() * 100 FROM generate_series(1, %s) d,"
                " generate_series(1, %s) m,"
                " generate_series(%s::timestamptz, %s::timestamptz - interval '1 microsecond',"
                " make_interval(secs => %s)) ts",
                [args.devices, args.metrics, start, end, args.interval],
            )

    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(load_day, day_starts))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analytics_sample")  # of every partition too
    return time.perf_counter() - started


def table_facts(args: argparse.Namespace, layout: str, now: datetime) -> dict:
    """Rows, size, partitions; the raw 24-hour SELECT alone (psycopg, no Django):
    its plan (which partitions), planning time on a warm connection, p50/p99."""
    sql = (
        "SELECT ts, value FROM analytics_sample WHERE device_id = %s AND metric_id = 1"
        " AND ts >= %s AND ts < %s"
    )
    window = [now - DAY, now]
    with psycopg.connect(database_url(args, layout)) as conn:
        rows = conn.execute("SELECT count(*) FROM analytics_sample").fetchone()[0]
        size = conn.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
            " WHERE c.relname LIKE 'analytics_sample%%' AND c.relkind IN ('r', 'p')"
        ).fetchone()[0]
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'analytics_sample'::regclass"
        ).fetchone()[0]
        for _ in range(args.warmup):  # warm the catalog cache: the planning time of a pool
            conn.execute(sql, [1, *window]).fetchall()
        plan = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", [1, *window])]
        timings = []
        for n in range(args.queries):
            started = time.perf_counter()
            conn.execute(sql, [n % args.devices + 1, *window]).fetchall()
            timings.append((time.perf_counter() - started) * 1000)

    def plan_ms(label: str) -> float:
        return next(float(line.split()[2]) for line in plan if line.startswith(label))

    scanned = re.findall(r"analytics_sample_(?:p\d{8}|default|legacy)\b", "\n".join(plan))
    return {
        "rows": rows,
        "size": size,
        "partitions": parts,
        "sql_planning_ms": plan_ms("Planning Time"),
        "sql_execution_ms": plan_ms("Execution Time"),  # in the server, no transfer
        "sql_scanned": sorted(set(scanned)),
        "sql_p50_ms": round(statistics.median(timings), 2),
        "sql_p99_ms": round(sorted(timings)[int(len(timings) * 0.99) - 1], 2),
    }


# --- Phases under Django --------------------------------------------------------------------------


def django_phase(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepot.settings")
    import django

    django.setup()
    now = datetime.fromisoformat(args.now)
    if args.phase == "partitions":
        from analytics.partitions import partitions_ensure

        return {"created": len(partitions_ensure(now - args.days * DAY))}
    if args.phase == "query":
        return query_times(args, now)
    return drop_oldest_day(args, now)


def query_times(args: argparse.Namespace, now: datetime) -> dict:
    from analytics.queries import metric_series
    from analytics.services import rollup_minutes

    # Minute rollups of the last day up to the last closed minute, as beat keeps
    # them: a step of 60 reads them, plus the raw tail after the last one.
    last_minute = now.replace(second=0)
    rollup_minutes(start=last_minute - DAY - timedelta(hours=1), end=last_minute)
    result = {}
    for step in (10, 60):
        timings, points = [], 0
        for n in range(args.warmup + args.queries):
            device = n % args.devices + 1
            started = time.perf_counter()
            series = metric_series(
                device_pk=device,
                name="bench.m1",
                start=now - DAY,
                end=now,
                step=step,
                agg="avg",
                now=now,
            )
            elapsed = (time.perf_counter() - started) * 1000
            if n >= args.warmup:
                timings.append(elapsed)
                points = len(series.points)
        timings.sort()
        result[f"step={step}"] = {
            "points": points,
            "p50_ms": round(statistics.median(timings), 2),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
        }
    return result


def drop_oldest_day(args: argparse.Namespace, now: datetime) -> dict:
    from django.conf import settings

    from analytics.partitions import partitions_drop_expired

    oldest_day_end = now.replace(hour=0, minute=0, second=0, microsecond=0) - (args.days - 1) * DAY
    # the horizon falls exactly at the end of the oldest day
    at = oldest_day_end + timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    started = time.perf_counter()
    rows = partitions_drop_expired(at)
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}


def delete_oldest_day(args: argparse.Namespace, now: datetime) -> dict:
    oldest_day_end = now.replace(hour=0, minute=0, second=0, microsecond=0) - (args.days - 1) * DAY
    with psycopg.connect(database_url(args, PLAIN), autocommit=True) as conn:
        started = time.perf_counter()
        deleted = conn.execute(
            "DELETE FROM analytics_sample WHERE ts < %s", [oldest_day_end]
        ).rowcount
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("VACUUM analytics_sample")
        vacuum = time.perf_counter() - started
    return {"rows": deleted, "seconds": round(elapsed, 3), "vacuum_seconds": round(vacuum, 3)}


# --- Main -----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    if args.phase:
        print(json.dumps(django_phase(args)))
        return
    if args.reuse:
        with psycopg.connect(database_url(args, PARTITIONED)) as conn:
            newest = conn.execute("SELECT max(ts) FROM analytics_sample").fetchone()[0]
        now = newest + timedelta(seconds=args.interval)
    else:
        now = datetime.now(tz=UTC).replace(microsecond=0)
    first = now.replace(hour=0, minute=0, second=0) - args.days * DAY
    report: dict = {"now": now.isoformat(), "first": first.isoformat()}
    for layout in (PARTITIONED, PLAIN):
        facts = {}
        if not args.reuse:
            create(args, layout, now)
            facts["load_seconds"] = round(load(args, layout, first, now), 1)
        facts.update(table_facts(args, layout, now))
        print(f"{layout}: {json.dumps(facts)}", flush=True)
        report[layout] = facts
        report[layout]["query"] = phase(args, layout, "query", now)
        print(f"{layout} query: {json.dumps(report[layout]['query'])}", flush=True)
    if not args.reuse:
        report[PARTITIONED]["prune"] = phase(args, PARTITIONED, "drop", now)
        report[PLAIN]["prune"] = delete_oldest_day(args, now)
        for layout in (PARTITIONED, PLAIN):
            print(f"{layout} prune of the oldest day: {json.dumps(report[layout]['prune'])}")
    # The target is the API's default step (60 s: minute rollups and the raw tail);
    # step=10 passes 8,640 raw rows through Django, partitioned or not.
    p99 = report[PARTITIONED]["query"]["step=60"]["p99_ms"]
    verdict = "PASS" if p99 < 50 else "FAIL"
    print(f"24-hour series at step=60 on the partitioned table: p99 {p99} ms: {verdict} (< 50 ms)")


if __name__ == "__main__":
    main()
