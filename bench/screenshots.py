"""Screenshots for the README, from a running demo, in Debian's Chromium (`make screenshots`).

Sets up the embedded demo as `make run` does, on a temporary var directory (SQLite,
file cache and broker; the developer's own var/ is left alone), starts the web
server and a simulated fleet (with lab monitors) through the agent's own
`simulate`, lets it report for a while, logs in as the demo admin and writes
1440x900 PNGs of the dashboard, a device page and a lab monitor's thermal view
into bench/screenshots/.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "screenshots"
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("HOMEPOT_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1440, "height": 900}
SITE = "demo-lab"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_env(var_dir: Path) -> dict[str, str]:
    # The embedded default, whatever the caller's shell points at.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"DEBUG": "true", "HOMEPOT_VAR_DIR": str(var_dir)}


def manage(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "manage.py", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def demo_password(env: dict[str, str], var_dir: Path) -> str:
    manage(env, "migrate", "--noinput")
    out = manage(env, "demo_setup", "--site", SITE, "--token-file", str(var_dir / "demo-token"))
    found = re.search(r"password '([^']+)'", out)
    if not found:
        raise SystemExit(f"demo_setup printed no password:\n{out}")
    return found.group(1)


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_server(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def login(page: Page, password: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def open_first_tile(page: Page, device_type: str) -> None:
    """The dashboard filtered by type, then the first device's page: as a person would."""
    page.goto(f"/admin/?type={device_type}&status=online")
    page.locator("#dashboard-grid .tile-name").first.click()
    page.wait_for_load_state("networkidle")


def scroll_to_top(page: Page, selector: str) -> None:
    """The element at the top of the window, when the page has it."""
    element = page.locator(selector)
    if element.count():
        element.first.evaluate("node => node.scrollIntoView()")


def shoot(page: Page, name: str) -> Path:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def take_screenshots(base_url: str, password: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(base_url=base_url, viewport=VIEWPORT)
        login(page, password)
        page.wait_for_load_state("networkidle")
        shots = [shoot(page, "dashboard")]
        open_first_tile(page, "simulated")
        # The device's own panels (header, latest values, charts) rather than its form.
        scroll_to_top(page, "#homepot-device-header")
        shots.append(shoot(page, "device-page"))
        open_first_tile(page, "lab_monitor")
        # A frame the live view drew itself (the page polls while it is open).
        page.wait_for_selector("#homepot-thermal-live svg.homepot-heatmap", timeout=30_000)
        scroll_to_top(page, "#homepot-lab")
        shots.append(shoot(page, "thermal-view"))
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=int, default=24, help="simulated devices")
    parser.add_argument("--warmup", type=float, default=45, help="seconds of reports first")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="homepot-shots-") as tmp:
        var_dir = Path(tmp)
        env = demo_env(var_dir)
        password = demo_password(env, var_dir)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        web = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
        token = (var_dir / "demo-token").read_text().strip()
        fleet = [str(BIN / "homepot-agent"), "simulate", "--server", base_url, "--site", SITE]
        fleet += ["--token", token, "--count", str(options.fleet), "--interval", "2"]
        fleet += ["--state-dir", str(var_dir / "fleet"), "--wait", "60"]
        with running(web, env, var_dir / "web.log"):
            wait_for_server(base_url)
            with running(fleet, env, var_dir / "fleet.log"):
                print(
                    f"demo on {base_url}: {options.fleet} simulated devices report for "
                    f"{options.warmup:.0f} s"
                )
                time.sleep(options.warmup)
                take_screenshots(base_url, password)


if __name__ == "__main__":
    main()
