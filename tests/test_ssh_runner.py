"""Rounds of SSH checks against the real sshd: metrics stored as the device's
telemetry, presence, host keys, connection failures with retries and the circuit
breaker, hanging and flooding commands, parsers, the sink's refusals."""

import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery.signals import task_retry
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.utils import timezone

from analytics.models import LatestValue, Sample
from analytics.services import CheckMetricsRefused, check_metrics_store
from devices.models import AuditEntry, Device, Event, SshCheck, SshTarget, SshTargetCheck
from devices.services import devices_mark_offline
from devices.ssh.limits import session_slot
from devices.ssh.runner import RoundRetry, SshBusy, ssh_round_run, ssh_target_check_now
from devices.ssh.schedule import ssh_rounds_claim
from devices.ssh.transport import host_key_fingerprint
from devices.tasks import run_ssh_round
from homepot import celery_app
from tests.ssh_targets import check_make, target_make
from tests.sshd import SshServer

pytestmark = pytest.mark.usefixtures("ssh_identity")
Status = SshTarget.LastStatus


@pytest.fixture(autouse=True)
def _quick(settings) -> None:  # noqa: ANN001
    settings.SSH_CONNECT_TIMEOUT_SECONDS = 5
    settings.SSH_SLOT_WAIT_SECONDS = 5
    settings.SSH_CONNECT_RETRIES = 2
    settings.SSH_BREAKER_THRESHOLD = 2
    settings.SSH_BREAKER_COOLDOWN_SECONDS = 300


@pytest.fixture
def retries() -> Iterator[list[str]]:
    """The reasons of every Celery retry of a task while the test runs."""
    seen: list[str] = []

    def record(sender: object, reason: object, **_: object) -> None:
        seen.append(str(reason))

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)


def round_run(target: SshTarget) -> str | None:
    """The round of all the target's checks, through the real task (eager: its
    retries run at once, their countdowns are not waited)."""
    pks = sorted(target.target_checks.values_list("pk", flat=True))
    return run_ssh_round.apply(args=[target.pk, pks]).get()


def builtin(name: str) -> SshCheck:
    return SshCheck.objects.get(name=name, builtin=True)


def latest_metrics(device: Device) -> dict[str, float]:
    return dict(LatestValue.objects.filter(device=device).values_list("metric__name", "value"))


def check_rows(target: SshTarget) -> dict[str, tuple[str, str, int]]:
    rows = target.target_checks.values_list(
        "ssh_check__name", "last_status", "last_error", "last_metric_count"
    )
    return {name: (status, error, count) for name, status, error, count in rows}


def kinds(device: Device) -> list[str]:
    return list(Event.objects.filter(device=device).order_by("id").values_list("kind", flat=True))


def other_host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


def marker(sshd: SshServer) -> Path:
    return sshd.workdir / f"ran-{uuid.uuid4().hex}"


# --- A good round -------------------------------------------------------------------------


def test_a_round_stores_parsed_metrics_as_telemetry_and_brings_the_device_online(
    site, sshd
) -> None:
    checks = [
        builtin("uptime"),
        builtin("load"),
        check_make("answer", "echo 42", parser=SshCheck.Parser.NUMBER, metric_prefix="wet.answer"),
        check_make("fan", "printf 'rpm=1200\\nduty=40\\n'", parser=SshCheck.Parser.KEY_EQUALS),
        check_make("psu", "printf 'volts: 12.1\\n'", parser=SshCheck.Parser.KEY_COLON),
        check_make("diag", """echo '{"link": {"up": 1}, "crc_errors": 0}'""", parser="json"),
    ]
    target = target_make(site, "wet-1", checks, server=sshd, interval_seconds=60)
    target.target_checks.filter(ssh_check__name="fan").update(interval_seconds=20)

    assert round_run(target) == Status.OK

    metrics = latest_metrics(target.device)
    assert metrics["wet.uptime"] > 0 and math.isfinite(metrics["wet.load1"])
    assert {k: v for k, v in metrics.items() if k.split(".")[1] not in {"uptime", "load1"}} == {
        "wet.load5": metrics["wet.load5"],
        "wet.load15": metrics["wet.load15"],
        "wet.answer": 42.0,
        "wet.fan.rpm": 1200.0,
        "wet.fan.duty": 40.0,
        "wet.psu.volts": 12.1,
        "wet.diag.link.up": 1.0,
        "wet.diag.crc_errors": 0.0,
    }
    assert Sample.objects.filter(device=target.device).count() == len(metrics) == 10
    target.refresh_from_db()
    assert (target.last_status, target.last_error, target.claimed_until) == ("ok", "", None)
    assert check_rows(target)["load"] == ("ok", "", 3)
    device = target.device
    device.refresh_from_db()
    assert device.status == Device.Status.ONLINE
    assert device.last_seen == target.last_check_at
    # The offline sweep expects it back within its shortest check interval.
    assert device.checkin_interval == timedelta(seconds=20)
    assert kinds(device) == ["device.online"]

    assert round_run(target) == Status.OK
    assert kinds(device) == ["device.online"]  # transitions only
    assert Sample.objects.filter(device=device).count() == 20


def test_a_check_finding_nothing_to_read_is_ok_with_its_note(site, sshd) -> None:
    no_sensors = check_make("no-hwmon", "true", parser=SshCheck.Parser.HWMON, metric_prefix="wet")
    target = target_make(site, "wet-1", [no_sensors], server=sshd)

    outcome = ssh_target_check_now(target=target, actor=None)

    assert outcome.status == Status.OK
    (check,) = outcome.checks
    assert (check.status, check.metrics, check.note) == (
        "ok",
        {},
        "no hwmon temperature sensors",
    )
    assert check_rows(target)["no-hwmon"] == ("ok", "", 0)


def test_an_unreachable_board_goes_offline_through_the_usual_sweep(site, sshd, settings) -> None:
    target = target_make(site, "wet-1", [builtin("uptime")], server=sshd, interval_seconds=30)
    round_run(target)
    device = Device.objects.get(pk=target.device_id)

    later = device.last_seen + timedelta(seconds=30 + settings.DEVICE_OFFLINE_GRACE_SECONDS + 1)
    assert devices_mark_offline(now=later) == ["wet-1"]


# --- Host keys ---------------------------------------------------------------------------------


def test_a_wrong_pinned_key_runs_nothing_and_records_the_offered_key(site, sshd) -> None:
    ran = marker(sshd)
    touch = check_make("touch", f"touch {ran}; echo 1")
    pinned = other_host_key()
    target = target_make(site, "wet-1", [touch], server=sshd, host_key=pinned)

    assert round_run(target) == Status.HOST_KEY_MISMATCH
    assert round_run(target) == Status.HOST_KEY_MISMATCH

    assert not ran.exists()
    target.refresh_from_db()
    offered = " ".join(sshd.host_key.split()[:2])
    assert target.offered_host_key.split()[:2] == offered.split()
    assert target.offered_host_key_at is not None
    # Not counted by the breaker: the host is up, an operator must act.
    assert (target.consecutive_failures, target.circuit_opened_at) == (0, None)
    (event,) = Event.objects.filter(device=target.device, kind="ssh.host_key_mismatch")
    assert event.data == {
        "fingerprint": host_key_fingerprint(sshd.host_key),
        "pinned_fingerprint": host_key_fingerprint(pinned),
    }
    assert Device.objects.get(pk=target.device_id).status == Device.Status.NEW


def test_with_no_pinned_key_the_first_contact_only_reports_the_offered_key(site, sshd) -> None:
    ran = marker(sshd)
    target = target_make(
        site, "wet-1", [check_make("touch", f"touch {ran}; echo 1")], server=sshd, host_key=""
    )

    outcome = ssh_target_check_now(target=target, actor=None)

    assert outcome.status == Status.HOST_KEY_MISMATCH
    assert outcome.offered_fingerprint == host_key_fingerprint(sshd.host_key)
    assert not ran.exists()


def test_accepting_the_offered_key_clears_it_on_the_next_round(site, sshd) -> None:
    target = target_make(site, "wet-1", [builtin("uptime")], server=sshd, host_key="")
    round_run(target)
    target.refresh_from_db()
    SshTarget.objects.filter(pk=target.pk).update(host_key=target.offered_host_key)

    assert round_run(target) == Status.OK

    target.refresh_from_db()
    assert (target.offered_host_key, target.offered_host_key_at) == ("", None)
    assert kinds(target.device)[-2:] == ["ssh.check_recovered", "device.online"]


# --- Connection failures, retries, the circuit breaker --------------------------------------


def test_a_closed_port_is_retried_then_opens_the_circuit_until_a_trial_succeeds(
    site, sshd, retries
) -> None:
    target = target_make(site, "wet-1", [builtin("uptime")], server=sshd)
    with sshd.down():
        assert round_run(target) == Status.FAILED
        assert len(retries) == 2  # SSH_CONNECT_RETRIES, then the last attempt counts
        target.refresh_from_db()
        assert (target.consecutive_failures, target.circuit_opened_at) == (1, None)
        assert "refused" in target.last_error
        assert check_rows(target)["uptime"][0] == "failed"

        assert round_run(target) == Status.FAILED
        target.refresh_from_db()
        assert target.consecutive_failures == 2
        opened = target.circuit_opened_at
        assert opened is not None

        # Open: the dispatcher runs no round and says why.
        assert ssh_rounds_claim(now=opened + timedelta(seconds=299)) == []
        target.refresh_from_db()
        assert target.last_status == Status.CIRCUIT_OPEN

    # The board is back; after the cool-down one trial round runs and closes the circuit.
    (trial,) = ssh_rounds_claim(now=opened + timedelta(seconds=300))
    result = run_ssh_round.apply(
        args=[trial.target_pk, trial.check_pks], kwargs={"claim": trial.claim.isoformat()}
    )
    assert result.get() == Status.OK
    target.refresh_from_db()
    assert (target.consecutive_failures, target.circuit_opened_at, target.claimed_until) == (
        0,
        None,
        None,
    )
    assert kinds(target.device) == [
        "ssh.check_failed",
        "ssh.circuit_opened",
        "ssh.check_recovered",
        "device.online",
    ]
    failed = Event.objects.get(device=target.device, kind="ssh.check_failed")
    assert "refused" in failed.data["error"]


def test_a_failed_half_open_trial_reopens_the_circuit_without_a_new_event(site, sshd) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    target = target_make(
        site,
        "wet-1",
        [builtin("uptime")],
        server=sshd,
        consecutive_failures=2,
        circuit_opened_at=long_ago,
        last_status=Status.CIRCUIT_OPEN,
    )
    with sshd.down():
        assert round_run(target) == Status.FAILED

    target.refresh_from_db()
    assert target.circuit_opened_at > long_ago
    assert target.consecutive_failures == 3
    assert kinds(target.device) == []


def test_a_refused_key_is_not_retried(site, sshd, retries) -> None:
    target = target_make(site, "wet-1", [builtin("uptime")], server=sshd, username="nobody")

    assert round_run(target) == Status.FAILED

    assert retries == []
    target.refresh_from_db()
    assert "refused the server's key" in target.last_error
    assert target.consecutive_failures == 1


def test_a_round_retried_after_a_connection_error_stores_its_metrics_once(site, sshd) -> None:
    target = target_make(site, "wet-1", [builtin("load")], server=sshd)
    (claimed,) = ssh_rounds_claim(now=timezone.now())
    arguments = {"target_pk": target.pk, "check_pks": claimed.check_pks, "claim": claimed.claim}

    with sshd.down(), pytest.raises(RoundRetry) as retry:
        ssh_round_run(**arguments, attempt=0)
    assert retry.value.attempt == 1 and retry.value.countdown > 0
    target.refresh_from_db()
    # Nothing recorded, the claim still held, while the retry waits.
    assert (target.last_check_at, target.claimed_until) == (None, claimed.claim)

    assert ssh_round_run(**arguments, attempt=retry.value.attempt).status == Status.OK
    assert Sample.objects.filter(device=target.device).count() == 3


def test_a_round_whose_claim_was_taken_over_runs_nothing(site, sshd) -> None:
    ran = marker(sshd)
    target = target_make(site, "wet-1", [check_make("touch", f"touch {ran}; echo 1")], server=sshd)
    (claimed,) = ssh_rounds_claim(now=timezone.now())
    SshTarget.objects.filter(pk=target.pk).update(
        claimed_until=claimed.claim + timedelta(minutes=5)
    )

    assert (
        ssh_round_run(target_pk=target.pk, check_pks=claimed.check_pks, claim=claimed.claim) is None
    )
    assert not ran.exists()


# --- Checks that hang, flood or lie -------------------------------------------------------------


def test_a_hanging_check_times_out_and_the_next_checks_still_run(site, sshd) -> None:
    hang = check_make("a-hang", "sleep 30", timeout_seconds=1)
    after = check_make("b-after", "echo 7", metric_prefix="wet.after")
    target = target_make(site, "wet-1", [hang, after], server=sshd)

    outcome = ssh_target_check_now(target=target, actor=None)

    assert [(c.name, c.status, c.error) for c in outcome.checks] == [
        ("a-hang", "failed", "timed out after 1 s"),
        ("b-after", "ok", ""),
    ]
    assert 900 <= outcome.checks[0].duration_ms < 5000
    assert latest_metrics(target.device) == {"wet.after": 7.0}
    target.refresh_from_db()
    assert (target.last_status, target.last_error) == ("failed", "a-hang: timed out after 1 s")
    # The host answered: online, and the breaker counts no failure.
    assert target.consecutive_failures == 0
    assert Device.objects.get(pk=target.device_id).status == Device.Status.ONLINE


def test_output_beyond_the_cap_fails_its_check_and_is_reported(site, sshd, settings) -> None:
    settings.SSH_MAX_OUTPUT_BYTES = 65_536
    flood = check_make("a-flood", "head -c 1000000 /dev/zero | tr '\\0' 7")
    after = check_make("b-after", "echo 7", metric_prefix="wet.after")
    target = target_make(site, "wet-1", [flood, after], server=sshd)

    outcome = ssh_target_check_now(target=target, actor=None)

    assert [(c.status, c.error) for c in outcome.checks] == [
        ("failed", "output larger than 65536 bytes (capped)"),
        ("ok", ""),
    ]
    assert check_rows(target)["a-flood"][1] == "output larger than 65536 bytes (capped)"


def test_bad_output_and_a_failing_command_fail_only_their_checks(site, sshd) -> None:
    checks = [
        check_make("a-json", "echo not json", parser="json"),
        check_make("b-exit", "echo oops >&2; exit 3"),
        check_make("c-ok", "echo 5", metric_prefix="wet.c"),
    ]
    target = target_make(site, "wet-1", checks, server=sshd)

    outcome = ssh_target_check_now(target=target, actor=None)

    errors = {c.name: c.error for c in outcome.checks}
    assert errors == {
        "a-json": "The output is not JSON: 'not json'.",
        "b-exit": "exit status 3: oops",
        "c-ok": "",
    }
    assert latest_metrics(target.device) == {"wet.c": 5.0}
    (event,) = Event.objects.filter(device=target.device, kind="ssh.check_failed")
    assert set(event.data["checks"]) == {"a-json", "b-exit"}


def test_metrics_the_sink_refuses_fail_the_check_at_fault_not_the_worker(
    site, sshd, settings
) -> None:
    settings.TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE = 3
    few = check_make("a-few", "echo 1", metric_prefix="wet.few")
    many = check_make("b-many", "printf 'a=1\\nb=2\\nc=3\\nd=4\\n'", parser="key_equals")
    target = target_make(site, "wet-1", [few, many], server=sshd)

    assert round_run(target) == Status.FAILED

    rows = check_rows(target)
    assert rows["a-few"] == ("ok", "", 1)
    assert rows["b-many"][0] == "failed"
    assert rows["b-many"][1].startswith("metrics refused: A device may have at most 3")
    assert latest_metrics(target.device) == {"wet.few": 1.0}


# --- On request -------------------------------------------------------------------------------


def test_check_now_is_audited_and_closes_an_open_circuit(site, sshd, operator) -> None:
    target = target_make(
        site,
        "wet-1",
        [builtin("uptime")],
        server=sshd,
        consecutive_failures=5,
        circuit_opened_at=timezone.now(),
        last_status=Status.CIRCUIT_OPEN,
    )

    outcome = ssh_target_check_now(target=target, actor=operator)

    assert outcome.status == Status.OK
    target.refresh_from_db()
    assert (target.circuit_opened_at, target.consecutive_failures) == (None, 0)
    entry = AuditEntry.objects.get(action="ssh_target.check")
    assert (entry.actor_user, entry.target_id, entry.data["status"]) == (operator, "wet-1", "ok")


def test_check_now_of_a_target_without_checks_tests_the_connection(site, sshd) -> None:
    target = target_make(site, "wet-1", [], server=sshd, consecutive_failures=1)

    assert ssh_target_check_now(target=target, actor=None).status == Status.OK

    target.refresh_from_db()
    assert target.consecutive_failures == 0
    assert Device.objects.get(pk=target.device_id).status == Device.Status.ONLINE


def test_check_now_says_busy_when_no_slot_comes_free(site, sshd, settings) -> None:
    settings.SSH_SLOT_WAIT_SECONDS = 0.2
    target = target_make(site, "wet-1", [builtin("uptime")], server=sshd)

    with session_slot(target_pk=target.pk, lease=30, wait=1), pytest.raises(SshBusy):
        ssh_target_check_now(target=target, actor=None)

    assert SshTargetCheck.objects.get(ssh_target=target).last_run_at is None


# --- The telemetry sink -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"wet.temp\n": 1.0}, "Invalid metric name"),
        ({"wet.temp": math.nan}, "finite"),
        ({"wet.temp": 1e300}, "Must be between"),
        ({"wet.temp": True}, "Must be a number"),
    ],
)
def test_the_sink_refuses_what_agent_ingest_refuses(site, metrics, message) -> None:
    device = Device.objects.create(public_id="wet-1", name="w", device_type="wet_board", site=site)

    with pytest.raises(CheckMetricsRefused, match=message):
        check_metrics_store(device, timezone.now(), metrics)
    assert not Sample.objects.exists()


def test_the_sink_stores_valid_metrics(site) -> None:
    device = Device.objects.create(public_id="wet-1", name="w", device_type="wet_board", site=site)

    assert check_metrics_store(device, timezone.now(), {"wet.a": 1.0, "wet.b": -2}) == 2
    assert latest_metrics(device) == {"wet.a": 1.0, "wet.b": -2.0}


# --- Beat -> dispatch -> run_ssh_round on a real worker ------------------------------------------


def worker_start(env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=threads"]
    command += ["--concurrency=4", "--without-gossip", "--without-mingle", "--loglevel=INFO"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out, start_new_session=True)


def worker_stop(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.mark.django_db(transaction=True)
def test_beats_task_dispatches_rounds_that_a_real_worker_runs(
    site, sshd, ssh_identity, tmp_path
) -> None:
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("a worker process needs the test database on PostgreSQL and a Redis broker")
    targets = [target_make(site, f"wet-{n}", [builtin("uptime")], server=sshd) for n in range(3)]
    database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    env = os.environ | {
        "DATABASE_URL": database._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
        "HOMEPOT_SSH_KEY_FILE": str(ssh_identity),
    }
    worker = worker_start(env, tmp_path / "worker.log")
    try:
        # What beat sends every SSH_DISPATCH_SECONDS.
        celery_app.send_task("devices.tasks.dispatch_ssh_checks")
        deadline = time.monotonic() + 60
        while SshTarget.objects.filter(last_status=Status.OK).count() < 3:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        worker_stop(worker)

    assert SshTarget.objects.filter(claimed_until__isnull=True).count() == 3
    for target in targets:
        assert set(latest_metrics(target.device)) == {"wet.uptime"}
