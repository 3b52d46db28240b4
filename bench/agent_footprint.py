"""Agent footprint: RSS and CPU seconds per hour of ``homepot-agent run``.

Target (from the issue): at a 10-second collect interval, the agent's resident
memory within 1.3x of a bare ``python3 -c 'import psutil, requests'`` process
(the floor: the same interpreter with the agent's two dependencies imported,
measured in the same run), and under 1% of one core.

What it does:

1. drops and re-creates a dedicated PostgreSQL database (default
   ``homepot_footprint_bench``), flushes a dedicated Redis DB (default ``/6``),
   migrates, and runs ``manage.py demo_setup`` for a site and a fresh
   enrollment token;
2. starts gunicorn (default 1 gthread worker x 2 threads) and registers one
   agent with the real CLI (``homepot-agent --config ... register``) into a
   temporary state directory, then sets collect/push/poll intervals (default
   10/30/30 s) in its TOML file;
3. starts ``homepot-agent --config ... run`` and, at the same moment, the floor
   process ``python -c 'import psutil, requests, time; time.sleep(N)'`` with
   the same interpreter (the venv's, which has both packages);
4. samples both with psutil every ``--sample-every`` seconds: RSS and CPU time
   (user + system). The CPU baseline is taken after ``--warm-up`` seconds, so
   start-up (imports, first collect, first requests) is excluded; the measured
   window is then ``--minutes`` long;
5. checks the agent's work: its first push landed (``status.json`` in its state
   directory), and the samples stored on the server for the device
   (``analytics_sample``); then sends SIGTERM and checks it exits 0.

It prints figures and PASS/FAIL against the targets; it asserts nothing.

Needs PostgreSQL (trust auth) and Redis running. Run from the repository root
(about ``--minutes`` + 1 minute):

    .venv/bin/python bench/agent_footprint.py --minutes 3
    .venv/bin/python bench/agent_footprint.py --minutes 0.5 --sample-every 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from auth_bench import (  # noqa: E402  (bench/ is not a package)
    PYTHON,
    REPO_ROOT,
    Server,
    database_name,
    flush_redis,
    recreate_database,
    run_step,
    server_environment,
)

TARGET_RSS_RATIO = 1.3
TARGET_CORE_PERCENT = 1.0
DEVICE_ID = "footprint-agent"
MIB = 1024 * 1024
SAMPLES_QUERY = (
    "SELECT count(*), count(DISTINCT s.ts), count(DISTINCT s.metric_id)"
    " FROM analytics_sample s JOIN devices_device d ON d.id = s.device_id"
    " WHERE d.device_id = %s"
)


# --- Command line ------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="homepot-agent RSS and CPU vs a bare 'import psutil, requests' process."
    )
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/homepot_footprint_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="measured window, after the warm-up"
    )
    parser.add_argument(
        "--warm-up", type=float, default=15.0, help="seconds before the CPU baseline"
    )
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--collect-interval", type=float, default=10.0)
    parser.add_argument("--push-interval", type=float, default=30.0)
    parser.add_argument("--poll-interval", type=float, default=30.0)
    parser.add_argument("--site", default="footprint-lab")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--gunicorn-threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="DEVICE_KEY_BCRYPT_ROUNDS")
    parser.add_argument("--keep-logs", action="store_true", help="print the agent's log at the end")
    args = parser.parse_args()
    if args.minutes <= 0 or args.warm_up < 0 or args.sample_every <= 0:
        parser.error("--minutes and --sample-every must be > 0, --warm-up >= 0")
    return args


def agent_executable() -> str:
    """The console script next to the interpreter running this bench (the venv's)."""
    candidate = Path(PYTHON).parent / "homepot-agent"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("homepot-agent")
    if found is None:
        sys.exit("homepot-agent not found: pip install -e ./agent_client into this venv")
    return found


# --- Set-up: server, enrollment, agent configuration ---------------------------------------


def prepare(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> str:
    """Fresh database and Redis DB, migrated; returns the site's enrollment token."""
    print(f"setup (database {database_name(args.database_url)}, redis {args.redis_url}):")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    run_step("migrate", [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    token_file = workdir / "token"
    demo = [PYTHON, "manage.py", "demo_setup", "--site", args.site, "--token-file", str(token_file)]
    run_step("demo_setup", demo, env)
    return token_file.read_text().strip()


def agent_environment() -> dict[str, str]:
    """The bench's environment without HOMEPOT_AGENT_* overrides: the TOML decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HOMEPOT_AGENT_")}


def register_agent(
    args: argparse.Namespace, server: Server, token: str, config: Path, state_dir: Path
) -> None:
    command = [
        agent_executable(), "--config", str(config), "register",
        "--server", f"http://{server.host}", "--site", args.site, "--token", token,
        "--device-id", DEVICE_ID, "--state-dir", str(state_dir),
    ]  # fmt: skip
    run_step(f"homepot-agent register ({DEVICE_ID})", command, agent_environment())


def set_intervals(args: argparse.Namespace, config: Path) -> None:
    """Write the intervals into the agent's TOML, replacing any the CLI wrote."""
    overrides = {
        "collect_interval": args.collect_interval,
        "push_interval": args.push_interval,
        "poll_interval": args.poll_interval,
    }
    kept = [
        line
        for line in config.read_text().splitlines()
        if line.split("=", 1)[0].strip() not in overrides
    ]
    kept += [f"{key} = {float(value)!r}" for key, value in overrides.items()]
    config.write_text("\n".join(kept) + "\n")
    tomllib.loads(config.read_text())  # still valid TOML
    print(f"  agent config: {', '.join(f'{k} {v:g}s' for k, v in overrides.items())}")


# --- The two measured processes --------------------------------------------------------------


@dataclass
class Measured:
    """One process under observation, its samples and its log."""

    label: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.process.pid)
        self.rss: list[int] = []

    def alive(self) -> bool:
        return self.process.poll() is None

    def sample_rss(self) -> int:
        rss = self.ps.memory_info().rss
        self.rss.append(rss)
        return rss

    def cpu_seconds(self, with_children: bool = True) -> float:
        """user + system; with reaped children's time (subprocesses it ran) by default."""
        t = self.ps.cpu_times()
        own = t.user + t.system
        return own + t.children_user + t.children_system if with_children else own

    def uss(self) -> int | None:
        try:
            return self.ps.memory_full_info().uss
        except (psutil.AccessDenied, AttributeError):
            return None

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM, then wait; returns (exit code or None if it had to be killed, seconds)."""
        if not self.alive():
            return self.process.returncode, 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        return code, time.monotonic() - started

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(label: str, command: list[str], log_path: Path) -> Measured:
    log = log_path.open("ab")
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=agent_environment(),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches only the bench, which stops them
    )
    log.close()
    return Measured(label, process, log_path)


def start_pair(args: argparse.Namespace, config: Path, workdir: Path) -> tuple[Measured, Measured]:
    """The agent and the floor process, started back to back."""
    sleep = int(args.warm_up + args.minutes * 60 + 600)
    agent = spawn(
        "agent", [agent_executable(), "--config", str(config), "run"], workdir / "agent.log"
    )
    floor = spawn(
        "floor",
        [PYTHON, "-c", f"import psutil, requests, time; time.sleep({sleep})"],
        workdir / "floor.log",
    )
    return agent, floor


# --- Measurement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    seconds: float
    agent_cpu: float  # including reaped children
    agent_cpu_own: float
    floor_cpu: float
    startup_cpu: float  # agent CPU before the baseline


def read_status(state_dir: Path) -> dict[str, object]:
    try:
        return json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def sample_until(
    deadline: float, every: float, pair: tuple[Measured, Measured], state_dir: Path
) -> None:
    """Record RSS of both every `every` seconds until `deadline` (monotonic)."""
    agent, floor = pair
    while True:
        for m in pair:
            if not m.alive():
                sys.exit(f"{m.label} exited early ({m.process.returncode}):\n{m.log_tail()}")
            m.sample_rss()
        status = read_status(state_dir)
        pushed = "yes" if status.get("last_push") else "not yet"
        print(
            f"    agent rss {agent.rss[-1] / MIB:6.1f} MiB, cpu {agent.cpu_seconds():6.2f}s;"
            f"  floor rss {floor.rss[-1] / MIB:6.1f} MiB;  pushed: {pushed}",
            flush=True,
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(every, remaining))


def measure(args: argparse.Namespace, pair: tuple[Measured, Measured], state_dir: Path) -> Window:
    agent, floor = pair
    started = time.monotonic()
    pids = f"agent pid {agent.process.pid}, floor pid {floor.process.pid}"
    print(f"\nwarm-up {args.warm_up:g}s ({pids}):", flush=True)
    sample_until(started + args.warm_up, args.sample_every, pair, state_dir)
    base_at = time.monotonic()
    base_agent, base_own = agent.cpu_seconds(), agent.cpu_seconds(with_children=False)
    base_floor = floor.cpu_seconds()
    print(f"measuring {args.minutes:g} min (sample every {args.sample_every:g}s):", flush=True)
    sample_until(base_at + args.minutes * 60, args.sample_every, pair, state_dir)
    seconds = time.monotonic() - base_at
    return Window(
        seconds=seconds,
        agent_cpu=agent.cpu_seconds() - base_agent,
        agent_cpu_own=agent.cpu_seconds(with_children=False) - base_own,
        floor_cpu=floor.cpu_seconds() - base_floor,
        startup_cpu=base_agent,
    )


def wait_for_first_push(state_dir: Path, timeout: float) -> float | None:
    """status.json's last_push (wall clock), waiting up to `timeout` seconds for it."""
    deadline = time.monotonic() + timeout
    while True:
        last_push = read_status(state_dir).get("last_push")
        if isinstance(last_push, (int, float)):
            return float(last_push)
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def stored_samples(database_url: str) -> tuple[int, int, int]:
    """(rows, distinct timestamps, distinct metrics) in analytics_sample for the device."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(SAMPLES_QUERY, [DEVICE_ID]).fetchone()
    return (row[0], row[1], row[2]) if row else (0, 0, 0)


# --- Report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_memory(agent: Measured, floor: Measured) -> None:
    agent_end, agent_max = agent.rss[-1], max(agent.rss)
    floor_end, floor_max = floor.rss[-1], max(floor.rss)
    ratio_end, ratio_max = agent_end / floor_end, agent_max / floor_max
    print("\nmemory (RSS):")
    print(f"  agent: {agent_end / MIB:.1f} MiB at end, {agent_max / MIB:.1f} MiB max")
    print(
        f"  floor: {floor_end / MIB:.1f} MiB at end, {floor_max / MIB:.1f} MiB max"
        "  (python -c 'import psutil, requests', same interpreter)"
    )
    agent_uss, floor_uss = agent.uss(), floor.uss()
    if agent_uss and floor_uss:
        print(
            f"  (USS, private memory: agent {agent_uss / MIB:.1f} MiB, "
            f"floor {floor_uss / MIB:.1f} MiB, ratio {agent_uss / floor_uss:.2f})"
        )
    print(
        f"  ratio agent/floor: {ratio_end:.2f} at end, {ratio_max:.2f} max over max"
        f"  (target <= {TARGET_RSS_RATIO})  {verdict(ratio_max <= TARGET_RSS_RATIO)}"
    )


def print_cpu(args: argparse.Namespace, window: Window) -> None:
    per_hour = window.agent_cpu / window.seconds * 3600
    percent = window.agent_cpu / window.seconds * 100
    print(f"\nCPU (window {window.seconds:.0f}s after a {args.warm_up:g}s warm-up):")
    print(f"  agent start-up (before the baseline): {window.startup_cpu:.2f} CPU s")
    print(
        f"  agent: {window.agent_cpu:.2f} CPU s in the window"
        f" (own {window.agent_cpu_own:.2f}, reaped children "
        f"{window.agent_cpu - window.agent_cpu_own:.2f})"
    )
    print(f"  floor: {window.floor_cpu:.2f} CPU s in the window")
    print(f"  agent extrapolated: {per_hour:.1f} CPU s per hour")
    print(
        f"  agent: {percent:.3f}% of one core  (target < {TARGET_CORE_PERCENT:g}%)  "
        f"{verdict(percent < TARGET_CORE_PERCENT)}"
    )


def print_work(
    args: argparse.Namespace, database_url: str, state_dir: Path, agent_seconds: float
) -> None:
    last_push = wait_for_first_push(state_dir, timeout=args.push_interval + 30)
    rows, stamps, metrics = stored_samples(database_url)
    status = read_status(state_dir)
    print("\nagent's work:")
    if last_push is None:
        print("  first push: NONE landed (status.json has no last_push)  FAIL")
    else:
        print(f"  last push {time.time() - last_push:.0f}s ago; status {json.dumps(status)}")
    expected = agent_seconds / args.collect_interval
    print(
        f"  stored on the server for {DEVICE_ID}: {rows} samples = {stamps} collects x "
        f"{metrics} metrics ({stamps / (agent_seconds / 60):.1f} collects/min over "
        f"{agent_seconds:.0f}s of running; ~{expected:.0f} collected, the last "
        f"<= {args.push_interval:g}s not yet pushed)"
    )


def print_shutdown(agent: Measured, floor: Measured) -> None:
    code, seconds = agent.stop(timeout=10.0)
    floor.stop(timeout=5.0)
    ok = code == 0 and seconds < 5.0
    shown = "killed after 10s" if code is None else f"exit code {code}"
    print(f"\nSIGTERM to the agent: {shown} after {seconds:.2f}s  {verdict(ok)}")


# --- Main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> None:
    env = server_environment(args)
    token = prepare(args, env, workdir)
    server = Server(args, env, workdir / "gunicorn.log")
    config, state_dir = workdir / "agent.toml", workdir / "state"
    pair: tuple[Measured, Measured] | None = None
    try:
        server.start()
        print(f"  gunicorn on {server.host}: {args.workers} x {args.worker_class}")
        register_agent(args, server, token, config, state_dir)
        set_intervals(args, config)
        pair = start_pair(args, config, workdir)
        started = time.monotonic()
        window = measure(args, pair, state_dir)
        agent, floor = pair
        print_memory(agent, floor)
        print_cpu(args, window)
        print_work(args, args.database_url, state_dir, time.monotonic() - started)
        print_shutdown(agent, floor)
        if args.keep_logs:
            print(f"\nagent log:\n{agent.log_tail(200)}")
    except BaseException:
        if pair is not None:
            print(f"agent log:\n{pair[0].log_tail()}", file=sys.stderr)
        print(f"gunicorn log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        for measured in pair or ():
            measured.stop(timeout=5.0)
        server.stop()


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the agent, the floor and gunicorn are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C too, even when started with SIGINT ignored (e.g. as a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="homepot-footprint-") as workdir:
        run(args, Path(workdir))


if __name__ == "__main__":
    main()
