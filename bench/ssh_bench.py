"""Agentless SSH checks at fleet scale: one full round of 200 targets on one worker.

Issue 12: checks of 200 targets on one worker with concurrency 20; print the
time of one full round and the per-check cost.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_ssh_bench``), flushes a dedicated Redis DB (default ``/7``: broker
   and session slots), migrates;
2. starts one real OpenSSH server (tests/sshd.py's SshServer, its own host key,
   authorized_keys and a free port) and points ``--targets`` SshTarget rows at
   it, each with the built-in checks ``--checks`` (the commands really run on
   this host: /proc, /sys);
3. starts one Celery worker (``--pool threads``, ``--concurrency 20``) with
   SSH_MAX_CONCURRENCY 20. Threads, not prefork: a round spends its time waiting
   on the network and the board, paramiko releases the GIL while it waits, and
   20 threads share one process's memory where prefork would hold 20 copies;
4. for each of ``--rounds`` rounds: makes every check due, calls the beat
   task's function (``ssh_checks_dispatch``, one ``run_ssh_round`` per target),
   and waits until every target has a ``last_check_at`` after the start. The
   first round includes the worker's warm-up (imports, DB connections).

Prints, per round: wall time, checks run, wall time per check, the worker's CPU
seconds per check (user + system of the worker process), and failures (must be
0). It asserts nothing.

Needs PostgreSQL (trust auth), Redis and /usr/sbin/sshd (openssh-server). Run
from the repository root:

    .venv/bin/python bench/ssh_bench.py
    .venv/bin/python bench/ssh_bench.py --targets 500 --concurrency 40 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
for path in (BENCH_DIR, BENCH_DIR.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from auth_bench import (  # noqa: E402  (bench/ is not a package)
    PYTHON,
    REPO_ROOT,
    flush_redis,
    recreate_database,
    run_step,
)

from tests.sshd import SshServer, sshd_available  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One round of SSH checks of many targets.")
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_ssh_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--checks", default="uptime,load,memory", help="built-in checks per target")
    parser.add_argument("--concurrency", type=int, default=20, help="worker threads")
    parser.add_argument(
        "--max-sessions", type=int, default=20, help="SSH_MAX_CONCURRENCY (sessions at once)"
    )
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait per round")
    return parser.parse_args()


# --- Database, Redis, environment -------------------------------------------------------


def bench_environment(args: argparse.Namespace, server: SshServer) -> dict[str, str]:
    return dict(os.environ) | {
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HOMEPOT_SSH_KEY_FILE": str(server.client_key_file),
        "SSH_MAX_CONCURRENCY": str(args.max_sessions),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


# --- Targets (Django in this process, after the environment is set) ----------------------


def targets_create(args: argparse.Namespace, server: SshServer) -> int:
    from devices.models import Device, Site, SshCheck, SshTarget, SshTargetCheck

    names = args.checks.split(",")
    checks = list(SshCheck.objects.filter(name__in=names))
    if len(checks) != len(names):
        found = sorted(c.name for c in checks)
        sys.exit(f"built-in checks {names} not all found (have {found})")
    site = Site.objects.create(public_id="bench-lab", name="Bench lab")
    devices = Device.objects.bulk_create(
        Device(public_id=f"wet-{n:04d}", name=f"WET {n}", device_type="wet_board", site=site)
        for n in range(args.targets)
    )
    targets = SshTarget.objects.bulk_create(
        SshTarget(
            device=device,
            host=server.host,
            port=server.port,
            username=server.username,
            host_key=server.host_key,
        )
        for device in devices
    )
    SshTargetCheck.objects.bulk_create(
        SshTargetCheck(ssh_target=target, ssh_check=check) for target in targets for check in checks
    )
    return len(targets) * len(checks)


# --- The worker -----------------------------------------------------------------------------


class Worker:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> None:
        command = [
            PYTHON, "-m", "celery", "-A", "celery_app", "worker",
            "--pool", args.pool, "--concurrency", str(args.concurrency),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        from celery_app import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if app.control.ping(timeout=1):
                return
        self.stop()
        sys.exit(f"the worker did not answer; its log:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system seconds of the worker and its pool processes (prefork)."""
        root = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# --- One round --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    label: str
    seconds: float
    targets_done: int
    checks_run: int
    cpu_seconds: float
    machine_busy: float  # share of all cores busy during the round (sshd, PostgreSQL...)
    failed_targets: int
    failed_checks: int
    errors: list[str]


def round_run(label: str, worker: Worker, targets: int, timeout: float) -> RoundResult:
    from django.utils import timezone

    from devices.models import SshTarget, SshTargetCheck
    from devices.ssh.schedule import ssh_checks_dispatch

    SshTargetCheck.objects.update(next_run_at=None)
    cpu_before = worker.cpu_seconds()
    psutil.cpu_percent()  # starts the machine-wide measurement
    started_at = timezone.now()
    started = time.monotonic()
    queued = ssh_checks_dispatch(now=started_at)
    if queued != targets:
        sys.exit(f"dispatch queued {queued} rounds, expected {targets}")
    done = _wait_done(started_at, targets, started + timeout)
    seconds = time.monotonic() - started
    cpu = worker.cpu_seconds() - cpu_before
    machine_busy = psutil.cpu_percent() / 100
    ran = SshTargetCheck.objects.filter(last_run_at__gte=started_at)
    this_round = SshTarget.objects.filter(last_check_at__gte=started_at)
    failed = this_round.exclude(last_status=SshTarget.LastStatus.OK)
    return RoundResult(
        label=label,
        seconds=seconds,
        targets_done=done,
        checks_run=ran.count(),
        cpu_seconds=cpu,
        machine_busy=machine_busy,
        failed_targets=failed.count() + (targets - done),
        failed_checks=ran.exclude(last_status="ok").count(),
        errors=list(failed.values_list("last_error", flat=True).distinct()[:5]),
    )


def _wait_done(started_at: datetime, targets: int, deadline: float) -> int:
    from devices.models import SshTarget

    while True:
        done = SshTarget.objects.filter(last_check_at__gte=started_at).count()
        if done >= targets or time.monotonic() > deadline:
            return done
        time.sleep(0.05)


def print_table(results: list[RoundResult], args: argparse.Namespace) -> None:
    print(
        f"\n{args.targets} targets x {len(args.checks.split(','))} checks ({args.checks}),"
        f" one sshd; worker --pool {args.pool} --concurrency {args.concurrency},"
        f" SSH_MAX_CONCURRENCY {args.max_sessions}; {os.cpu_count()} cores"
    )
    header = (
        f"  {'round':<18}{'wall s':>8}{'targets':>9}{'checks':>8}"
        f"{'ms/check':>10}{'CPU ms/check':>14}{'machine busy':>14}{'failures':>10}"
    )
    print(header)
    for r in results:
        per_check = r.seconds / r.checks_run * 1000 if r.checks_run else float("nan")
        cpu_per_check = r.cpu_seconds / r.checks_run * 1000 if r.checks_run else float("nan")
        failures = r.failed_targets + r.failed_checks
        print(
            f"  {r.label:<18}{r.seconds:>8.2f}{r.targets_done:>9}{r.checks_run:>8}"
            f"{per_check:>10.2f}{cpu_per_check:>14.2f}{r.machine_busy:>14.0%}{failures:>10}"
        )
        for error in r.errors:
            print(f"    error: {error}")


# --- Main ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> None:
    server = SshServer()
    try:
        server.start()
        env = bench_environment(args, server)
        print(f"setup (database {args.database_url}, redis {args.redis_url}, sshd :{server.port}):")
        recreate_database(args.database_url)
        flush_redis(args.redis_url)
        run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
        os.environ.update(env)
        import django

        django.setup()
        checks = targets_create(args, server)
        print(f"  {args.targets} targets, {checks} target checks", flush=True)
        worker = Worker(args, env, workdir / "worker.log")
        try:
            worker.wait_ready()
            results = [
                round_run(
                    "round 1 (warm-up)" if n == 1 else f"round {n}",
                    worker,
                    args.targets,
                    args.timeout,
                )
                for n in range(1, args.rounds + 1)
            ]
        finally:
            worker.stop()
        print_table(results, args)
        if any(r.failed_targets or r.failed_checks for r in results):
            print(f"\nworker log:\n{worker.log_tail()}")
    finally:
        server.cleanup()


def main() -> None:
    if not sshd_available():
        sys.exit("/usr/sbin/sshd is missing: apt-get install openssh-server")
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the worker and sshd are stopped in both cases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="homepot-ssh-bench-") as workdir:
        run(args, Path(workdir))


if __name__ == "__main__":
    main()
