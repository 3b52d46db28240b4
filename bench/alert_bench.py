"""Alert evaluation at fleet scale: one round of 10 rules over 10,000 devices.

Issue 13: evaluate 10 rules over 10,000 devices (latest values seeded,
PostgreSQL) and print the time of one evaluation round; target under 1 s.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_alert_bench``), migrates (which also creates the three built-in
   rules: device offline, SSH check failing, SSH host key mismatch);
2. creates ``--devices`` devices over ``--sites`` sites and three device types,
   and one latest value of each of 10 metrics per device (INSERT ... SELECT,
   uniform 0-100, seeded), a heartbeat metric ``--crossing`` percent of the
   devices last sent an hour ago, and ``--offline`` percent of the devices
   offline; VACUUM ANALYZE of those tables;
3. creates 10 rules whose thresholds ``--crossing`` percent (default 10: a
   tenth) of the devices in their scope cross: gt/ge/lt/le on the fleet, one
   scoped to a site, one to a device type, one with for_seconds, one with
   hysteresis, one with reminders, one `absent`. Rules have no notification channel
   unless ``--channel`` (then every transition also queues a delivery per
   alert, whose cost is notifications', not the evaluation's);
4. runs rounds of ``analytics.alerting.evaluate.alerts_evaluate`` in this
   process with a controlled clock:
   - round 1: every crossing fires (about 1,000 alerts a rule by default: a
     storm of 9,000; ``--crossing 1`` makes it 900);
   - round 2, 15 s later: nothing changed (the steady state);
   - round 3, 60 s later: every value moved by up to +-5 (alerts resolve,
     new ones fire, the for_seconds rule fires, last values update);
   - round 4, 300 s later: reminders of the reminding rule are due.

Prints per round: wall time, queries, and what the round did. It asserts
nothing; PASS/FAIL compares the slowest round with the target.

Needs PostgreSQL (trust auth). Run from the repository root:

    .venv/bin/python bench/alert_bench.py
    .venv/bin/python bench/alert_bench.py --crossing 1
    .venv/bin/python bench/alert_bench.py --devices 50000 --channel
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for path in (BENCH_DIR, BENCH_DIR.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from auth_bench import PYTHON, flush_redis, recreate_database, run_step  # noqa: E402

TARGET_SECONDS = 1.0
METRICS = [
    "cpu_percent", "memory_percent", "disk_percent", "temperature_c", "network_latency_ms",
    "error_rate", "fan_rpm", "active_connections", "transaction_volume", "transaction_count",
]  # fmt: skip
HEARTBEAT = "agent.up"
DEVICE_TYPES = ["raspberry_pi", "server", "pos_terminal"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One alert evaluation round of many devices.")
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_alert_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument(
        "--crossing",
        type=float,
        default=10.0,
        help="percent of the devices in a rule's scope whose value crosses its threshold",
    )
    parser.add_argument("--offline", type=float, default=1.0, help="percent of devices offline")
    parser.add_argument(
        "--channel",
        action="store_true",
        help="give every rule a webhook channel (deliveries queued, not sent: no worker)",
    )
    return parser.parse_args()


def bench_environment(args: argparse.Namespace) -> dict[str, str]:
    return dict(os.environ) | {
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # Deliveries (--channel) go to this broker, where no worker takes them: the
        # bench times evaluation, not sending. Flushed before and after.
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }


# --- Seeding (Django in this process, after the environment is set) ---------------------


def fleet_seed(args: argparse.Namespace, now: datetime) -> None:
    from django.db import connection

    from devices.models import Device, Site

    sites = Site.objects.bulk_create(
        Site(public_id=f"site-{n}", name=f"Site {n}") for n in range(args.sites)
    )
    Device.objects.bulk_create(
        (
            Device(
                public_id=f"dev-{n:06d}",
                name=f"Device {n}",
                device_type=DEVICE_TYPES[n % len(DEVICE_TYPES)],
                site=sites[n % len(sites)],
                status=Device.Status.ONLINE,
                last_seen=now,
            )
            for n in range(args.devices)
        ),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO analytics_metricname (name) SELECT unnest(%s::text[])",
            [[*METRICS, HEARTBEAT]],
        )
        cursor.execute("SELECT setseed(0.13)")
        cursor.execute(
            "INSERT INTO analytics_latestvalue (device_id, metric_id, ts, value)"
            " SELECT d.id, m.id, %s, round((random() * 100)::numeric, 2)"
            " FROM devices_device d CROSS JOIN analytics_metricname m"
            " WHERE m.name = ANY(%s)",
            [now - timedelta(seconds=5), METRICS],
        )
        cursor.execute(
            "INSERT INTO analytics_latestvalue (device_id, metric_id, ts, value)"
            " SELECT d.id, m.id,"
            "   CASE WHEN random() * 100 < %s THEN %s ELSE %s END, 1"
            " FROM devices_device d CROSS JOIN analytics_metricname m WHERE m.name = %s",
            [args.crossing, now - timedelta(hours=1), now - timedelta(seconds=5), HEARTBEAT],
        )
        cursor.execute(
            "UPDATE devices_device SET status = 'offline' WHERE random() < %s",
            [args.offline / 100],
        )
        # Registered a day ago: `absent` counts a device that never sent only then.
        cursor.execute("UPDATE devices_device SET created_at = %s", [now - timedelta(days=1)])
        # Only the seeded tables (Django is in autocommit: VACUUM may run). Statistics
        # saying the alert tables are empty would keep every backend's cached
        # foreign-key check plans on a sequential scan of them as they fill.
        cursor.execute("VACUUM ANALYZE devices_device, analytics_latestvalue, analytics_metricname")


def rules_create(args: argparse.Namespace) -> int:
    """The 10 rules; each crosses for about --crossing percent of the devices it
    looks at (values are uniform over 0-100)."""
    from analytics.models import AlertRule, NotificationChannel
    from devices.models import Site

    high, low = 100 - args.crossing, args.crossing
    site = Site.objects.order_by("pk").first()
    rules = [
        AlertRule(name="cpu high", metric="cpu_percent", condition="gt", threshold=high),
        AlertRule(name="memory high", metric="memory_percent", condition="ge", threshold=high),
        AlertRule(
            name="disk high (hysteresis)", metric="disk_percent", condition="gt", threshold=high,
            resolve_threshold=high - 5,
        ),
        AlertRule(
            name="hot for a minute", metric="temperature_c", condition="gt", threshold=high,
            for_seconds=60,
        ),
        AlertRule(  # one site: a tenth of the fleet
            name="latency at one site", metric="network_latency_ms", condition="gt",
            threshold=high, site=site,
        ),
        AlertRule(  # a third of the fleet
            name="server errors", metric="error_rate", condition="gt", threshold=high,
            device_type="server",
        ),
        AlertRule(name="fan stopped", metric="fan_rpm", condition="lt", threshold=low),
        AlertRule(
            name="few connections", metric="active_connections", condition="le", threshold=low
        ),
        AlertRule(
            name="volume high (reminders)", metric="transaction_volume", condition="gt",
            threshold=high, repeat_seconds=300,
        ),
        AlertRule(name="agent silent", metric=HEARTBEAT, condition="absent", for_seconds=600),
    ]  # fmt: skip
    AlertRule.objects.bulk_create(rules)
    if args.channel:
        channel = NotificationChannel.objects.create(
            name="bench hook", kind="webhook", url="http://127.0.0.1:9/hook",
            secret="whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0wMTIzNDU=",
        )  # fmt: skip
        for rule in AlertRule.objects.all():
            rule.channels.add(channel)
    return len(rules)


def values_move(now: datetime) -> None:
    """Every metric value moves by up to +-5 (clamped to 0-100), reported at `now`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_latestvalue SET ts = %s,"
            " value = least(100, greatest(0, round((value + random() * 10 - 5)::numeric, 2)))"
            " WHERE metric_id IN (SELECT id FROM analytics_metricname WHERE name = ANY(%s))",
            [now, METRICS],
        )


# --- Rounds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    label: str
    seconds: float
    queries: int
    report: object  # EvaluationReport


def round_run(label: str, now: datetime) -> RoundResult:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from analytics.alerting.evaluate import alerts_evaluate

    connection.queries_log.clear()  # it keeps 9,000 at most: counts need room
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        report = alerts_evaluate(now=now)
        seconds = time.perf_counter() - started
    return RoundResult(label, seconds, len(queries), report)


def print_table(results: list[RoundResult], args: argparse.Namespace, rules: int) -> None:
    from analytics.models import Alert, NotificationDelivery

    print(
        f"\n{args.devices:,} devices, {args.sites} sites; {rules} rules + 3 built-in, each"
        f" crossing for {args.crossing:g}% of its devices;"
        f" channels: {'one webhook per rule' if args.channel else 'none'}; {os.cpu_count()} cores"
    )
    print(
        f"  {'round':<34}{'wall s':>8}{'queries':>9}{'fired':>8}{'resolved':>10}"
        f"{'reminders':>11}{'pending':>9}{'skipped':>9}{'failed':>8}"
    )
    for r in results:
        rep = r.report
        print(
            f"  {r.label:<34}{r.seconds:>8.3f}{r.queries:>9}{rep.fired:>8}{rep.resolved:>10}"
            f"{rep.reminders:>11}{rep.pending:>9}{rep.skipped:>9}{rep.failed:>8}"
        )
    open_alerts = Alert.objects.filter(state__in=Alert.OPEN_STATES).count()
    print(
        f"  open alerts now: {open_alerts:,};"
        f" deliveries queued: {NotificationDelivery.objects.count():,}"
    )
    first, steady = results[0].seconds, results[1].seconds
    worst = max(r.seconds for r in results)
    print(
        f"  first round {first:.3f} s, steady round {steady:.3f} s, slowest {worst:.3f} s"
        f" (target < {TARGET_SECONDS:.0f} s) -> {'PASS' if worst < TARGET_SECONDS else 'FAIL'}"
    )


# --- Main ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    env = bench_environment(args)
    print(f"setup (database {args.database_url}, redis {args.redis_url}):")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    os.environ.update(env)
    import django

    django.setup()
    t0 = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    fleet_seed(args, t0)
    rules = rules_create(args)
    seconds = time.monotonic() - started
    print(f"  seed {args.devices:,} devices, their latest values and {rules} rules: {seconds:.1f}s")
    results = [
        round_run("1: first (fires)", t0),
        round_run("2: +15 s, nothing changed", t0 + timedelta(seconds=15)),
    ]
    values_move(t0 + timedelta(seconds=70))
    results.append(round_run("3: +75 s, every value moved", t0 + timedelta(seconds=75)))
    results.append(round_run("4: +315 s, reminders due", t0 + timedelta(seconds=315)))
    print_table(results, args, rules)
    flush_redis(args.redis_url)  # the deliveries no one will send


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(args)


if __name__ == "__main__":
    main()
