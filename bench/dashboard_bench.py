"""What 50 open fleet dashboards cost the server at rest.

Target (issue 14): 50 open dashboards cost the web server at most 10% of one
core while nothing happens in the fleet.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_bench_dashboard``), flushes a dedicated Redis DB (default ``/3``),
   migrates and collects static files (production settings: DEBUG off);
2. seeds a fleet of ``--devices`` devices over a few sites and types, with three
   metrics' latest values and an hour of minute rollups each, some open alerts
   and events (straight into the database: no agent runs, the fleet is at rest);
3. starts gunicorn as bench/auth_bench.py does and opens ``--dashboards``
   logged-in sessions, each loading /admin/ once and then polling as
   dashboard.js does: every ``--interval`` s, with its fingerprint and cursor;
4. for ``--duration`` s measures the CPU time of every gunicorn process (master
   and workers) and the poll latencies, and prints CPU as % of one core, p50/p99
   latency, and how many polls said "nothing changed" (204).

It prints figures and PASS/FAIL against the target; it asserts nothing. Needs
PostgreSQL (trust auth) and Redis running. From the repository root:

    .venv/bin/python bench/dashboard_bench.py
    .venv/bin/python bench/dashboard_bench.py --dashboards 50 --duration 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from auth_bench import (
    CLOCK_TICKS,
    PYTHON,
    Server,
    _process_stat,
    flush_redis,
    recreate_database,
    run_step,
    server_environment,
)

TARGET_CORE_PERCENT = 10.0
SITES = ("lab-a", "lab-b", "shop-1", "shop-2", "dc-1")
TYPES = ("raspberry_pi", "pos_terminal", "server", "lab_monitor")
METRICS = ("cpu_percent", "memory_percent", "disk_percent")
ROOT_ATTRIBUTES = re.compile(r'data-fingerprint="([^"]+)" data-cursor="([^"]+)"')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU of N open dashboards at rest.")
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_bench_dashboard"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between polls")
    parser.add_argument("--duration", type=int, default=60, help="measured seconds")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="unused: no device keys")
    return parser.parse_args()


# --- Seeding (in this process, with the server's settings) ----------------------------


def seed_fleet(devices: int) -> list[str]:
    """The fleet at rest, and one session cookie value per dashboard to open."""
    import django

    django.setup()
    from django.utils import timezone

    from analytics.models import Alert, AlertRule, LatestValue, MetricName, RollupMinute
    from devices.events import event_build, events_record
    from devices.models import Device, Site

    now = timezone.now()
    sites = [Site.objects.create(public_id=name, name=name.upper()) for name in SITES]
    statuses = ["online"] * 8 + ["offline", "new"]
    fleet = Device.objects.bulk_create(
        Device(
            public_id=f"dev-{n:04d}",
            name=f"device {n:04d}",
            site=sites[n % len(sites)],
            device_type=TYPES[n % len(TYPES)],
            status=statuses[n % len(statuses)],
            last_seen=None if n % 10 == 9 else now - timedelta(seconds=random.randint(1, 600)),
        )
        for n in range(devices)
    )
    metrics = [MetricName.objects.create(name=name) for name in METRICS]
    LatestValue.objects.bulk_create(
        LatestValue(device=d, metric=m, ts=now, value=random.uniform(5, 90))
        for d in fleet
        for m in metrics
    )
    minutes = [now.replace(second=0, microsecond=0) - timedelta(minutes=k) for k in range(60)]
    RollupMinute.objects.bulk_create(
        (
            RollupMinute(device=d, metric=m, bucket=b, min=1, max=90, sum=v * 6, count=6)
            for d in fleet
            for m in metrics
            for b, v in zip(minutes, (random.uniform(5, 90) for _ in minutes), strict=True)
        ),
        batch_size=20_000,
    )
    rule = AlertRule.objects.create(name="CPU hot", metric="cpu_percent", threshold=80)
    Alert.objects.bulk_create(
        Alert(rule=rule, device=d, severity="warning", fired_at=now) for d in fleet[::50]
    )
    events_record([event_build(kind="device.online", device=d) for d in fleet[:200]])
    return dashboard_sessions(count=_dashboards_wanted())


def _dashboards_wanted() -> int:
    return int(os.environ["BENCH_DASHBOARDS"])


def dashboard_sessions(count: int) -> list[str]:
    """Logged-in admin sessions (one per open dashboard), as the login form makes them."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("bench-operator", password=None)
    cookies = []
    for _ in range(count):
        client = Client()
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    return cookies


# --- The simulated dashboards ---------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[status] = self.statuses.get(status, 0) + 1


class Dashboard:
    """One open /admin/ page: loads once, then polls like dashboard.js."""

    def __init__(self, host: str, cookie: str) -> None:
        self.connection = http.client.HTTPConnection(host, timeout=30)
        self.headers = {"Cookie": f"sessionid={cookie}", "Accept": "application/json"}
        self.fingerprint = self.cursor = ""

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            return self._send(path)
        except (http.client.RemoteDisconnected, ConnectionError):
            # gunicorn closes a keep-alive connection idle for --keep-alive (2 s)
            # seconds: a browser reconnects too.
            self.connection.close()
            return self._send(path)

    def _send(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def open(self) -> None:
        status, body = self._get("/admin/")
        match = ROOT_ATTRIBUTES.search(body.decode())
        if status != 200 or match is None:
            sys.exit(f"/admin/ answered {status} without the dashboard:\n{body[:500]!r}")
        self.fingerprint, self.cursor = match[1], match[2]

    def poll(self, tally: Tally) -> None:
        query = urllib.parse.urlencode({"fp": self.fingerprint, "cursor": self.cursor})
        started = time.perf_counter()
        status, body = self._get(f"/admin/dashboard/poll?{query}")
        tally.add(status, time.perf_counter() - started)
        if status == 200:
            answer = json.loads(body)
            self.fingerprint, self.cursor = answer["fingerprint"], answer["cursor"]

    def run(self, until: float, interval: float, tally: Tally) -> None:
        time.sleep(random.uniform(0, interval))  # pages opened at different moments
        while time.monotonic() < until:
            started = time.monotonic()
            self.poll(tally)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


# --- CPU of the server's processes ----------------------------------------------------


def cpu_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        if stat := _process_stat(pid):
            ticks += int(stat[11]) + int(stat[12])  # utime + stime
    return ticks


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- Main -----------------------------------------------------------------------------


def prepare(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    print(f"Preparing {args.devices} devices, {args.dashboards} dashboards...", flush=True)
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--noinput"], env)
    run_step("collectstatic", [PYTHON, "manage.py", "collectstatic", "--noinput"], env)
    os.environ.update(env, BENCH_DASHBOARDS=str(args.dashboards))
    started = time.monotonic()
    cookies = seed_fleet(args.devices)
    print(f"  seed: {time.monotonic() - started:.1f}s", flush=True)
    return cookies


def measure(args: argparse.Namespace, server: Server, cookies: list[str]) -> None:
    dashboards = [Dashboard(server.host, cookie) for cookie in cookies]
    for dashboard in dashboards:
        dashboard.open()
    tally = Tally()
    pids = [server.process.pid, *server.worker_pids()]
    until = time.monotonic() + args.duration
    threads = [
        threading.Thread(target=d.run, args=(until, args.interval, tally), daemon=True)
        for d in dashboards
    ]
    before, started = cpu_ticks(pids), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    core_percent = (cpu_ticks(pids) - before) / CLOCK_TICKS / seconds * 100
    report(args, tally, core_percent, seconds)


def report(args: argparse.Namespace, tally: Tally, core_percent: float, seconds: float) -> None:
    latencies_ms = [s * 1000 for s in tally.latencies]
    print(
        f"\n{args.dashboards} dashboards polling every {args.interval:g}s for {seconds:.0f}s"
        f" ({args.devices} devices; gunicorn {args.workers} x {args.worker_class}"
        f" {args.gunicorn_threads} threads)"
    )
    print(f"  polls: {len(latencies_ms)} ({len(latencies_ms) / seconds:.1f}/s), by status:"
          f" {dict(sorted(tally.statuses.items()))}")  # fmt: skip
    print(f"  poll latency: p50 {statistics.median(latencies_ms):.1f} ms,"
          f" p99 {percentile(latencies_ms, 0.99):.1f} ms,"
          f" max {max(latencies_ms):.1f} ms")  # fmt: skip
    verdict = "PASS" if core_percent <= TARGET_CORE_PERCENT else "FAIL"
    print(f"  server CPU (gunicorn master + workers): {core_percent:.1f}% of one core"
          f" (target <= {TARGET_CORE_PERCENT:g}%): {verdict}")  # fmt: skip


def main() -> None:
    args = parse_args()
    env = server_environment(args)
    cookies = prepare(args, env)
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as workdir:
        server = Server(args, env, Path(workdir) / "gunicorn.log")
        server.start()
        try:
            measure(args, server, cookies)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
