"""The README's examples run as written, and the README describes only this repository.

The "Try it" section is run, block by block in one shell, against a fresh
embedded-default server (what `make run` starts: SQLite and files under a new
data directory, migrated, with the demo site), with the environment a fresh
terminal has: no DEBUG, no SECRET_KEY, no DATABASE_URL or REDIS_URL. Only the
server's address is substituted. Each step's answer is then checked.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_URL = "http://127.0.0.1:8000"
SERVER_VARIABLES = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "HOMEPOT_VAR_DIR"}


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_terminal_env(var_dir: Path) -> dict[str, str]:
    """A shell's environment without the server's settings; the data directory
    is the test's own (make run's is var/ in the repository)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    return env | {"HOMEPOT_VAR_DIR": str(var_dir)}


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env | {"DEBUG": "true"},
        check=True,
        capture_output=True,
        timeout=120,
    )


def _wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    """What `make run` starts the web server on: migrated, demo site, DEBUG on."""
    env = _fresh_terminal_env(tmp_path_factory.mktemp("var"))
    _manage(env, "migrate", "--noinput")
    _manage(env, "demo_setup")
    url = f"http://127.0.0.1:{_free_port()}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", url.removeprefix("http://"), "--noreload"],
        cwd=ROOT,
        env=env | {"DEBUG": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_up(url, server)
        yield url, env
    finally:
        server.terminate()
        server.wait(timeout=10)


def json_documents(text: str) -> list:
    """Every JSON document printed, in order (curl prints one per request)."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        found.append(document)
    return found


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")), reason="needs curl, jq")
def test_the_try_it_examples_run_as_written_against_a_fresh_server(fresh_server):
    url, env = fresh_server
    blocks = shell_blocks(section("Try it"))
    assert blocks, "no shell example in Try it"
    script = "\n".join(block.replace(README_URL, url) for block in blocks)
    shown = (
        'printf "\\n%s\\n%s\\n%s\\n%s\\n" "$API_TOKEN" "$ENROLLMENT_TOKEN" "$API_KEY" "$COMMAND_ID"'
    )

    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{script}\n{shown}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0 and run.stderr == "", run.stderr
    *printed, api_token, enrollment_token, api_key, command_id = run.stdout.splitlines()
    assert re.fullmatch(r"hpt_[0-9a-f]{64}", api_token)
    assert enrollment_token.startswith("het_")
    assert re.fullmatch(r"hpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", api_key)
    push, heartbeat, pending, ack, report, command, metrics = json_documents("\n".join(printed))
    assert (push["samples"], push["values"], push["duplicate"]) == (1, 3, False)
    assert heartbeat["device_id"] == "readme-pi"
    assert [(c["command_id"], c["status"]) for c in pending] == [(command_id, "delivered")]
    assert (ack["status"], report["status"]) == ("in_progress", "succeeded")
    assert (command["command_id"], command["status"], command["created_by"]) == (
        command_id,
        "succeeded",
        "alice",
    )
    assert command["result"] == {"service": "nginx.service", "action": "restart"}
    assert (metrics["name"], metrics["agg"], metrics["step"]) == ("cpu_percent", "max", 300)
    assert metrics["resolution"] in {"raw", "1m"}
    assert [p["value"] for p in metrics["points"]] == [12.5]


def test_management_commands_are_shown_the_way_they_run_without_debug():
    # `python manage.py ...` stops without DEBUG or SECRET_KEY (as production
    # must); the README runs them through make, which sets what make run sets.
    bare = [
        line
        for block in shell_blocks(README)
        for line in block.splitlines()
        if re.search(r"python\S* manage\.py", line) and not line.lstrip().startswith("#")
    ]

    assert [line for line in bare if "docker compose" not in line] == []


def test_make_manage_runs_homepot_user_with_no_debug_or_secret_key(tmp_path):
    env = _fresh_terminal_env(tmp_path / "var")
    _manage(env, "migrate", "--noinput")

    bare = subprocess.run(
        [sys.executable, "manage.py", "homepot_user", "bob", "--role", "viewer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    made = subprocess.run(
        ["make", "-s", "manage", "ARGS=homepot_user bob --role viewer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert bare.returncode != 0 and "SECRET_KEY must be set" in bare.stderr  # why make is used
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Created viewer 'bob' with password: ")


def test_the_readme_links_only_to_this_repository():
    targets = re.findall(r"\]\(([^)]+)\)", README) + re.findall(r"<(https?://[^>]+)>", README)
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", README, re.M)
    }

    for target in targets:
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert "://" not in target and (ROOT / target).resolve().is_relative_to(ROOT), target
            assert (ROOT / target).exists(), target


def test_every_event_kind_is_in_the_readme():
    from devices.event_kinds import EVENT_KINDS

    listed = set(
        re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", section("Alerting and notifications"), re.M)
    )

    assert listed == set(EVENT_KINDS)


@pytest.mark.django_db
def test_the_readmes_webhook_check_verifies_a_real_notification():
    """The receiver's snippet, run as written on a notification signed by the server."""
    from django.utils import timezone

    from analytics.models import Alert, AlertRule
    from analytics.notifications.channels import webhook_secret_new
    from analytics.notifications.payload import alert_payload, body_text
    from analytics.notifications.webhooks import webhook_headers
    from devices.models import Device, Site

    site = Site.objects.create(public_id="lab-1", name="Lab 1")
    device = Device.objects.create(
        public_id="pi-1", name="Pi", device_type="lab_monitor", site=site
    )
    rule = AlertRule.objects.create(name="hot", metric="bme680.temperature", threshold=35)
    now = timezone.now()
    alert = Alert.objects.create(
        rule=rule, device=device, severity="critical", value=36.5, fired_at=now
    )
    secret = webhook_secret_new()
    body = body_text(alert_payload(alert=alert, event_type="alert.fired", now=now))
    headers = webhook_headers(secret=secret, message_id="msg_readme", body=body, at=now)
    (snippet,) = re.findall(
        r"^```python\n(.*?)^```", section("Alerting and notifications"), re.M | re.S
    )
    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, sys\nsecret, body, headers = json.load(sys.stdin)\n{snippet}",
        ],
        input=json.dumps([secret, body, headers]),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.split() == ["alert.fired", "pi-1", "bme680.temperature", "36.5"]
    forged = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, sys\nsecret, body, headers = json.load(sys.stdin)\n{snippet}",
        ],
        input=json.dumps([webhook_secret_new(), body, headers]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert forged.returncode != 0 and "WebhookVerificationError" in forged.stderr
