"""Lab agent footprint: RSS and CPU of the real agent with all four lab collectors
(bme680, mlx90640 at 4 Hz, mcp3424, psu) on simulated buses, against the bare
``python -c 'import psutil, requests'`` floor, as bench/agent_footprint.py does
for the plain agent.

Target (issue 11): RSS <= 1.5x the floor, CPU < 2% of one core.

What it does: the set-up of bench/agent_footprint.py (fresh database and Redis
DB, gunicorn, the real CLI's register), then writes the four lab tables into the
agent's TOML, the thermal camera at 4 Hz (interval 0.25 s: the rate a live-view
lease asks for, held for the whole run), starts the SCPI emulator on a pty in a
process of its own (its CPU is not the agent's), and measures
``bench/lab_agent.py`` (the agent's own build_agent and run loop, with the I2C
buses simulated at the register level) beside the floor process.

    .venv/bin/python bench/lab_footprint.py --minutes 3
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import agent_footprint as base  # noqa: E402  (bench/ is not a package)
from auth_bench import PYTHON, REPO_ROOT, Server, server_environment  # noqa: E402

TARGET_RSS_RATIO = 1.5
TARGET_CORE_PERCENT = 2.0
THERMAL_HZ = 4
LAB_TABLES = f"""
[bme680]
address = 0x76
interval = 10.0

[mlx90640]
refresh_rate = {THERMAL_HZ}
interval = {1 / THERMAL_HZ}

[mcp3424]
address = 0x68
interval = 10.0
channels = [
  {{ channel = 1, name = "supply_voltage", gain = 1, resolution_bits = 16, scale = 11.0 }},
  {{ channel = 2, name = "board_current", gain = 8, resolution_bits = 16, scale = 10.0 }},
]

[psu]
port = "{{port}}"
baudrate = 115200
timeout = 0.5
interval = 10.0
max_voltage = 30.0
max_current = 3.0
"""
LAB_COLLECTORS = ["system", "agent", "bme680", "mlx90640", "mcp3424", "psu"]
EMULATOR = (
    "import sys, time; from pathlib import Path; sys.path.insert(0, {root!r});"
    "from tests.agent.scpi_emulator import ScpiEmulator;"
    "e = ScpiEmulator(Path({link!r})); e.voltage, e.output = 12.0, True;"
    "time.sleep(1e6)"
)
FRAMES_QUERY = (
    "SELECT count(*) FROM analytics_sample s JOIN analytics_metricname m ON m.id = s.metric_id"
    " JOIN devices_device d ON d.id = s.device_id WHERE d.device_id = %s AND m.name = %s"
)


def write_lab_config(config: Path, port: Path) -> None:
    """All four lab collectors, their tables after the top-level keys."""
    kept = [
        line
        for line in config.read_text().splitlines()
        if line.split("=", 1)[0].strip() != "enabled_collectors"
    ]
    kept.append(f"enabled_collectors = {LAB_COLLECTORS!r}".replace("'", '"'))
    config.write_text("\n".join(kept) + "\n" + LAB_TABLES.replace("{port}", str(port)))
    tomllib.loads(config.read_text())  # still valid TOML
    print(f"  lab collectors: {', '.join(LAB_COLLECTORS)}; thermal {THERMAL_HZ} Hz")


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    link = workdir / "ttyPSU"
    code = EMULATOR.format(root=str(REPO_ROOT), link=str(link))
    emulator = subprocess.Popen([PYTHON, "-c", code], cwd=REPO_ROOT, start_new_session=True)
    deadline = time.monotonic() + 10
    while not link.exists():
        if time.monotonic() > deadline or emulator.poll() is not None:
            sys.exit("the SCPI emulator did not start")
        time.sleep(0.1)
    return emulator, link


def start_pair(args, config: Path, workdir: Path) -> tuple[base.Measured, base.Measured]:
    sleep = int(args.warm_up + args.minutes * 60 + 600)
    agent = base.spawn(
        "agent",
        [PYTHON, str(BENCH_DIR / "lab_agent.py"), "--config", str(config)],
        workdir / "agent.log",
    )
    floor = base.spawn(
        "floor",
        [PYTHON, "-c", f"import psutil, requests, time; time.sleep({sleep})"],
        workdir / "floor.log",
    )
    return agent, floor


def print_lab_work(args, seconds: float) -> None:
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        counts = {
            name: conn.execute(FRAMES_QUERY, [base.DEVICE_ID, name]).fetchone()[0]
            for name in (
                "thermal.hotspot_x",
                "bme680.temperature",
                "adc.supply_voltage",
                "psu.voltage",
            )
        }
    print("\nlab work stored on the server (pushed so far):")
    for name, count in counts.items():
        print(f"  {name}: {count} samples")
    # thermal.hotspot_x comes from the agent only, one per frame (the server stores
    # thermal.min/max/mean of each frame it receives as well)
    frames = counts["thermal.hotspot_x"]
    print(f"  thermal frames: {frames / seconds:.2f} per second over {seconds:.0f}s")


def run(args, workdir: Path) -> None:
    env = server_environment(args)
    token = base.prepare(args, env, workdir)
    server = Server(args, env, workdir / "gunicorn.log")
    config, state_dir = workdir / "agent.toml", workdir / "state"
    pair, emulator = None, None
    try:
        server.start()
        print(f"  gunicorn on {server.host}: {args.workers} x {args.worker_class}")
        base.register_agent(args, server, token, config, state_dir)
        base.set_intervals(args, config)
        emulator, port = start_emulator(workdir)
        write_lab_config(config, port)
        pair = start_pair(args, config, workdir)
        started = time.monotonic()
        window = base.measure(args, pair, state_dir)
        agent, floor = pair
        base.print_memory(agent, floor)
        base.print_cpu(args, window)
        print_lab_work(args, time.monotonic() - started)
        base.print_shutdown(agent, floor)
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
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=5)
        server.stop()


def main() -> None:
    # The plain agent's bench, with this bench's targets.
    base.TARGET_RSS_RATIO, base.TARGET_CORE_PERCENT = TARGET_RSS_RATIO, TARGET_CORE_PERCENT
    args = base.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="homepot-lab-footprint-") as workdir:
        run(args, Path(workdir))


if __name__ == "__main__":
    main()
