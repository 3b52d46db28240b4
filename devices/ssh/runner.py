"""One round of a target's checks on one connection, and what it changes.

A round: take a session slot (devices.ssh.limits), connect once with the pinned
host key, run each check with its own timeout and the output cap, parse, close
the connection, give the slot back, then store the metrics and record the outcome.

What a round's outcome means:

- `ok`: connected and every check gave its metrics (a check finding nothing to
  read is ok, with a note).
- `failed`, connected: some checks failed (timeout, output too large, exit
  status, unparsable output, metrics refused); each check says why, the others'
  metrics are stored. The host answered, so the device is seen (online) and the
  circuit breaker counts it as a success.
- `failed`, not connected: refused, no answer, authentication refused, the
  server key missing. This is what the breaker counts: SSH_BREAKER_THRESHOLD such
  rounds in a row open the circuit; a failed half-open trial re-opens it; any
  round that connects closes it. A connection failure other than authentication
  is retried by the Celery task (SSH_CONNECT_RETRIES times, exponential
  back-off with jitter); only the last attempt is recorded.
- `host_key_mismatch`: the host offered another key; nothing ran. The offered key
  is kept for an operator to accept. Neither retried (a retry meets the same
  key) nor counted by the breaker (the host is up; an operator must act).
- `circuit_open` is set by the dispatcher when it skips a target (schedule.py).

A connection lost in the middle of a round fails the checks still to run and is
not retried: the checks that ran are stored, so a retry would store them twice.

The metrics of a round are stored in one call (one transaction, one timestamp);
only when the sink refuses them is each check stored on its own, so that the
refusal fails the check that caused it and not its neighbours.

Events are written on transitions only: `ssh.check_failed` when the target
starts failing, `ssh.circuit_opened` when the circuit leaves closed,
`ssh.check_recovered` when it is ok again, `ssh.host_key_mismatch` once per
distinct offered key; `device.online` when the device comes back.
"""

import dataclasses
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.utils import timezone

from devices.events import Actor, audit_record, event_build, events_record
from devices.models import Device, Event, SshTarget, SshTargetCheck
from devices.ssh.checks import ParseError, output_parse
from devices.ssh.identity import server_key_load
from devices.ssh.limits import SlotUnavailable, session_lease_seconds, session_slot
from devices.ssh.telemetry import telemetry_store
from devices.ssh.transport import (
    CommandTimeout,
    HostKeyMismatch,
    OutputTooLarge,
    SshConnectError,
    SshError,
    SshSession,
    host_key_fingerprint,
    ssh_connect,
)
from homepot.errors import ServiceError

logger = logging.getLogger(__name__)

Status = SshTarget.LastStatus
ERROR_LENGTH = 500  # last_error columns
STDERR_SHOWN = 200


@dataclass(frozen=True)
class CheckOutcome:
    """What one check gave: its metrics, or the error."""

    name: str
    status: str  # "ok" or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    # Said when an "ok" check found nothing to read ("no hwmon temperature sensors").
    note: str = ""
    duration_ms: int = 0


@dataclass(frozen=True)
class RoundOutcome:
    """A round: the target's status after it (SshTarget.LastStatus value), the
    error that failed the whole round (connection, host key, circuit), each check."""

    status: str
    error: str = ""
    checks: list[CheckOutcome] = field(default_factory=list)
    offered_fingerprint: str = ""  # set on host_key_mismatch
    # The offered key itself (OpenSSH public-key format), for an operator to accept.
    offered_host_key: str = ""

    @property
    def connected(self) -> bool:
        """The host was reached and the checks ran, whatever they gave (a round
        that did not connect has no check outcomes; one with no checks is ok)."""
        return self.status == Status.OK or bool(self.checks)


class RoundRetry(Exception):
    """Run the round again in `countdown` seconds, as connection attempt `attempt`."""

    def __init__(self, reason: str, *, countdown: float, attempt: int) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.attempt = attempt


class CheckFailed(Exception):
    """A check ran but failed (its exit status); the message is for operators."""


class SshBusy(ServiceError):
    """No session slot came free in time (for a check run on request)."""

    status_code = 503
    code = "ssh_busy"

    @property
    def retry_after_seconds(self) -> int:  # type: ignore[override]
        return max(1, math.ceil(settings.SSH_SLOT_WAIT_SECONDS))


# --- Scheduled rounds (devices.tasks.run_ssh_round) ------------------------------------


def ssh_round_run(
    *, target_pk: int, check_pks: list[int], claim: datetime | None, attempt: int = 0
) -> RoundOutcome | None:
    """Run and record a claimed round; None when there is nothing to run (target
    gone, disabled, or its claim taken over by a later dispatch).

    Raises RoundRetry when no slot came free or the connection failed with
    attempts left: nothing is recorded then."""
    target = _target_load(target_pk)
    if target is None or (claim is not None and target.claimed_until != claim):
        return None
    target_checks = _target_checks(target, check_pks)
    if not target.enabled or not target_checks:
        _claim_release(target_pk, claim)
        return None
    try:
        outcome, retryable = round_execute(target, target_checks)
    except SlotUnavailable as exc:
        raise RoundRetry(str(exc), countdown=slot_countdown(), attempt=attempt) from None
    if retryable and attempt < settings.SSH_CONNECT_RETRIES:
        raise RoundRetry(outcome.error, countdown=retry_countdown(attempt), attempt=attempt + 1)
    return round_record(target, target_checks, outcome, claim=claim)


def retry_countdown(attempt: int) -> float:
    """Back-off before connection attempt `attempt` + 1: doubling, jittered 0.5-1.5x
    so that boards behind one failed switch are not retried all at once."""
    return settings.SSH_RETRY_BACKOFF_SECONDS * 2**attempt * random.uniform(0.5, 1.5)


def slot_countdown() -> float:
    """When to ask again for a slot: about one slot wait later, jittered."""
    return max(1.0, settings.SSH_SLOT_WAIT_SECONDS) * random.uniform(0.5, 1.5)


def _target_load(target_pk: int) -> SshTarget | None:
    return (
        SshTarget.objects.select_related("device")
        .filter(pk=target_pk, device__decommissioned_at__isnull=True)
        .first()
    )


def _target_checks(target: SshTarget, check_pks: list[int] | None) -> list[SshTargetCheck]:
    rows = target.target_checks.select_related("ssh_check").order_by("ssh_check__name")
    return list(rows if check_pks is None else rows.filter(pk__in=check_pks))


def _claim_release(target_pk: int, claim: datetime | None) -> None:
    if claim is not None:
        SshTarget.objects.filter(pk=target_pk, claimed_until=claim).update(claimed_until=None)


# --- On request (API, admin) --------------------------------------------------------------


def ssh_target_check_now(*, target: SshTarget, actor: Actor) -> RoundOutcome:
    """All the target's checks, now, one connection attempt, through the same
    limits, recorded like a scheduled round. An open circuit does not stop it:
    an operator testing the connection is the probe, and its success closes
    the circuit. Raises SshBusy when no slot came free within SSH_SLOT_WAIT_SECONDS."""
    target_checks = _target_checks(target, None)
    try:
        outcome, _ = round_execute(target, target_checks)
    except SlotUnavailable as exc:
        raise SshBusy(f"{exc}; try again shortly.") from None
    outcome = round_record(target, target_checks, outcome, claim=None)
    audit_record(
        actor=actor,
        action="ssh_target.check",
        target=target.device,
        data={"status": outcome.status, "error": outcome.error},
    )
    return outcome


# --- Running a round -------------------------------------------------------------------------


def round_execute(
    target: SshTarget, target_checks: list[SshTargetCheck]
) -> tuple[RoundOutcome, bool]:
    """Connect once and run the checks, inside a session slot. Returns the
    outcome and whether its failure is worth retrying (a connection failure,
    not authentication). Raises SlotUnavailable."""
    lease = session_lease_seconds([tc.ssh_check.timeout_seconds for tc in target_checks])
    with session_slot(target_pk=target.pk, lease=lease, wait=settings.SSH_SLOT_WAIT_SECONDS):
        try:
            session = _connect(target)
        except HostKeyMismatch as exc:
            return _mismatch_outcome(exc), False
        except SshConnectError as exc:
            return RoundOutcome(status=Status.FAILED, error=str(exc)), not exc.auth
        except SshError as exc:  # the server's own key is missing or unreadable
            logger.error("%s", exc)
            return RoundOutcome(status=Status.FAILED, error=str(exc)), False
        with session:
            checks = [check_run(session, tc) for tc in target_checks]
    return _connected_outcome(checks), False


def _connect(target: SshTarget) -> SshSession:
    return ssh_connect(
        host=target.host,
        port=target.port,
        username=target.username,
        host_key=target.host_key,
        key=server_key_load(),
        timeout=settings.SSH_CONNECT_TIMEOUT_SECONDS,
    )


def _mismatch_outcome(exc: HostKeyMismatch) -> RoundOutcome:
    return RoundOutcome(
        status=Status.HOST_KEY_MISMATCH,
        error=str(exc),
        offered_fingerprint=exc.fingerprint,
        offered_host_key=exc.offered,
    )


def check_run(session: SshSession, target_check: SshTargetCheck) -> CheckOutcome:
    """One check: a failure of this check (even a hang) is its own outcome only."""
    check = target_check.ssh_check
    started = time.monotonic()
    try:
        parsed = _check_parse(session, target_check)
    except CommandTimeout:
        outcome = _failed(check.name, f"timed out after {check.timeout_seconds} s")
    except OutputTooLarge:
        outcome = _failed(
            check.name, f"output larger than {settings.SSH_MAX_OUTPUT_BYTES} bytes (capped)"
        )
    except (CheckFailed, ParseError, SshConnectError) as exc:
        outcome = _failed(check.name, str(exc))
    else:
        outcome = CheckOutcome(name=check.name, status="ok", metrics=parsed[0], note=parsed[1])
    duration_ms = round((time.monotonic() - started) * 1000)
    return dataclasses.replace(outcome, duration_ms=duration_ms)


def _check_parse(session: SshSession, target_check: SshTargetCheck) -> tuple[dict, str]:
    check = target_check.ssh_check
    result = session.run(
        check.command,
        timeout=check.timeout_seconds,
        max_output=settings.SSH_MAX_OUTPUT_BYTES,
    )
    if result.exit_status != 0:
        stderr = result.stderr.strip()[:STDERR_SHOWN]
        raise CheckFailed(f"exit status {result.exit_status}" + (f": {stderr}" if stderr else ""))
    parsed = output_parse(check.parser, result.stdout, check.metric_prefix)
    return parsed.metrics, parsed.note


def _failed(name: str, error: str) -> CheckOutcome:
    return CheckOutcome(name=name, status="failed", error=error)


def _connected_outcome(checks: list[CheckOutcome]) -> RoundOutcome:
    failed = [check for check in checks if check.status != "ok"]
    if not failed:
        return RoundOutcome(status=Status.OK, checks=checks)
    summary = "; ".join(f"{check.name}: {check.error}" for check in failed)
    return RoundOutcome(status=Status.FAILED, error=summary[:ERROR_LENGTH], checks=checks)


# --- Storing the metrics --------------------------------------------------------------------


def metrics_store(device: Device, at: datetime, outcome: RoundOutcome) -> RoundOutcome:
    """Store every ok check's metrics in one call; if the sink refuses them, store
    check by check so that only the checks at fault fail (with the reason)."""
    if not any(check.metrics for check in outcome.checks):
        return outcome
    merged = {name: v for check in outcome.checks for name, v in check.metrics.items()}
    try:
        telemetry_store(device=device, at=at, metrics=merged)
        return outcome
    except ServiceError:
        pass
    checks = [_check_store(device, at, check) for check in outcome.checks]
    return _connected_outcome(checks)


def _check_store(device: Device, at: datetime, check: CheckOutcome) -> CheckOutcome:
    try:
        telemetry_store(device=device, at=at, metrics=check.metrics)
    except ServiceError as exc:
        return dataclasses.replace(
            check, status="failed", metrics={}, error=f"metrics refused: {exc}"
        )
    return check


# --- Recording the outcome ------------------------------------------------------------------


def round_record(
    target: SshTarget,
    target_checks: list[SshTargetCheck],
    outcome: RoundOutcome,
    *,
    claim: datetime | None,
) -> RoundOutcome:
    """Metrics, then in one transaction: the target row (status, breaker, offered
    key, claim cleared), the check rows, the device's presence and the events."""
    now = timezone.now()
    outcome = metrics_store(target.device, now, outcome)
    with transaction.atomic():
        # Locked: a check run on request and a scheduled round may finish together.
        current = SshTarget.objects.select_for_update().get(pk=target.pk)
        changes, events = target_changes(current, outcome, now)
        if claim is not None:
            # Cleared only if still this round's claim (not a later dispatch's).
            changes["claimed_until"] = Case(
                When(claimed_until=claim, then=Value(None, output_field=DateTimeField())),
                default=F("claimed_until"),
            )
        SshTarget.objects.filter(pk=target.pk).update(**changes)
        _checks_record(target_checks, outcome, now)
        if outcome.connected:
            events += presence_record(target, target_checks, now)
        events_record(events)
    return outcome


def target_changes(
    target: SshTarget, outcome: RoundOutcome, now: datetime
) -> tuple[dict[str, object], list[Event]]:
    """The columns a round's outcome sets on its target, and the events of the transitions."""
    changes: dict[str, object] = {
        "last_check_at": now,
        "last_status": outcome.status,
        "last_error": outcome.error[:ERROR_LENGTH],
    }
    events = []
    if outcome.status == Status.HOST_KEY_MISMATCH:
        events += _offered_key_changes(target, outcome, now, changes)
    elif outcome.connected:
        changes |= {
            "consecutive_failures": 0,
            "circuit_opened_at": None,
            "offered_host_key": "",
            "offered_host_key_at": None,
        }
    else:
        events += _breaker_failure(target, outcome, now, changes)
    events += _status_events(target, outcome)
    return changes, events


def _offered_key_changes(
    target: SshTarget, outcome: RoundOutcome, now: datetime, changes: dict
) -> list[Event]:
    """Keep the offered key for an operator; one event per distinct offered key."""
    if outcome.offered_host_key == target.offered_host_key:
        return []
    changes |= {"offered_host_key": outcome.offered_host_key, "offered_host_key_at": now}
    return [
        event_build(
            kind="ssh.host_key_mismatch",
            device=target.device_id,
            message=outcome.error[:ERROR_LENGTH],
            data={
                "fingerprint": outcome.offered_fingerprint,
                "pinned_fingerprint": _pinned_fingerprint(target),
            },
        )
    ]


def _pinned_fingerprint(target: SshTarget) -> str:
    try:
        return host_key_fingerprint(target.host_key) if target.host_key.strip() else ""
    except ValueError:
        return ""


def _breaker_failure(
    target: SshTarget, outcome: RoundOutcome, now: datetime, changes: dict
) -> list[Event]:
    """A round that could not connect: one more failure; the circuit (re-)opens at
    the threshold (a failed half-open trial is past it already)."""
    failures = target.consecutive_failures + 1
    changes["consecutive_failures"] = failures
    if failures < settings.SSH_BREAKER_THRESHOLD:
        return []
    changes["circuit_opened_at"] = now
    if target.circuit_opened_at is not None:
        return []  # re-opened after a failed trial: not a new transition
    cooldown = timedelta(seconds=settings.SSH_BREAKER_COOLDOWN_SECONDS)
    return [
        event_build(
            kind="ssh.circuit_opened",
            device=target.device_id,
            message=f"{failures} failed rounds in a row; next try after {cooldown}",
            data={"consecutive_failures": failures, "error": outcome.error[:ERROR_LENGTH]},
        )
    ]


FAILING = {Status.FAILED, Status.CIRCUIT_OPEN}


def _status_events(target: SshTarget, outcome: RoundOutcome) -> list[Event]:
    if outcome.status == Status.FAILED and target.last_status not in FAILING:
        failed_checks = {c.name: c.error for c in outcome.checks if c.status != "ok"}
        data = {"error": outcome.error[:ERROR_LENGTH], "checks": failed_checks}
        return [_event("ssh.check_failed", target, outcome.error, data)]
    if outcome.status == Status.OK and target.last_status in FAILING | {Status.HOST_KEY_MISMATCH}:
        return [_event("ssh.check_recovered", target, "", {"previous": target.last_status})]
    return []


def _event(kind: str, target: SshTarget, message: str, data: dict) -> Event:
    return event_build(kind=kind, device=target.device_id, message=message[:500], data=data)


def _checks_record(
    target_checks: list[SshTargetCheck], outcome: RoundOutcome, now: datetime
) -> None:
    """Each check's latest outcome, in one UPDATE. A round that did not connect
    fails every check with the round's error."""
    by_name = {check.name: check for check in outcome.checks}
    for row in target_checks:
        check = by_name.get(row.ssh_check.name) or _failed(row.ssh_check.name, outcome.error)
        row.last_run_at = now
        row.last_status = check.status
        row.last_error = check.error[:ERROR_LENGTH]
        row.last_metric_count = len(check.metrics)
    SshTargetCheck.objects.bulk_update(
        target_checks, ["last_run_at", "last_status", "last_error", "last_metric_count"]
    )


# --- Presence ---------------------------------------------------------------------------------


def presence_record(
    target: SshTarget, target_checks: list[SshTargetCheck], now: datetime
) -> list[Event]:
    """The host answered: the device is online, seen now, and expected again
    within its shortest check interval (so devices_mark_offline notices when it
    stops answering). Returns device.online when it came back."""
    interval = timedelta(seconds=_shortest_interval(target))
    device = Device.objects.filter(pk=target.device_id, decommissioned_at__isnull=True)
    if device.filter(status=Device.Status.ONLINE).update(last_seen=now, checkin_interval=interval):
        return []
    if device.update(status=Device.Status.ONLINE, last_seen=now, checkin_interval=interval):
        return [event_build(kind="device.online", device=target.device_id)]
    return []


def _shortest_interval(target: SshTarget) -> int:
    own = SshTargetCheck.objects.filter(ssh_target=target).values_list(
        "interval_seconds", flat=True
    )
    return min(
        (seconds or target.interval_seconds for seconds in own), default=target.interval_seconds
    )
