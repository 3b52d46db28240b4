"""Which SSH checks are due, and one round per target claimed so that no round runs twice.

Beat calls `ssh_checks_dispatch` every SSH_DISPATCH_SECONDS. It reads every due
check in one query (target enabled, device in service, next_run_at unset or
past), claims each target's round by a conditional UPDATE of claimed_until, moves
the claimed checks' next_run_at on by their own interval, and queues one
`devices.tasks.run_ssh_round` per target after the commit: all of a target's
checks due together share one connection.

A target whose circuit is open gets no round: its status says `circuit_open`
and its checks stay due, so the trial round starts at the first dispatch after
the cool-down (half-open). The claim is the trial's lock: one trial at a time.

The claim lasts as long as the round may take with its retries; the runner
clears it when the round is recorded. If a worker dies mid-round, the claim
lapses and a later dispatch claims the target again.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Q, Value, When

from devices.models import SshTarget, SshTargetCheck
from devices.ssh.breaker import Circuit, circuit_state
from devices.ssh.limits import session_lease_seconds

RUN_ROUND_TASK = "devices.tasks.run_ssh_round"
# For the time a queued round waits for a worker.
QUEUE_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class DueCheck:
    pk: int
    target_pk: int
    interval_seconds: int
    timeout_seconds: int
    circuit_opened_at: datetime | None


@dataclass(frozen=True)
class ClaimedRound:
    """A round to run: the target, its due checks, and the claim it holds."""

    target_pk: int
    check_pks: list[int]
    claim: datetime


def ssh_checks_dispatch(*, now: datetime) -> int:
    """Claim and queue the rounds due at `now`; returns how many were queued."""
    rounds = ssh_rounds_claim(now=now)
    if rounds:
        transaction.on_commit(lambda: rounds_enqueue(rounds))
    return len(rounds)


def rounds_enqueue(rounds: Iterable[ClaimedRound]) -> None:
    for claimed in rounds:
        current_app.send_task(
            RUN_ROUND_TASK,
            args=[claimed.target_pk, claimed.check_pks],
            kwargs={"claim": claimed.claim.isoformat()},
        )


def ssh_rounds_claim(*, now: datetime) -> list[ClaimedRound]:
    """The rounds due at `now` that this caller now owns (claimed in one transaction).

    A constant number of queries whatever the number of targets."""
    by_target = _group_by_target(due_checks(now))
    runnable = _skip_open_circuits(by_target, now)
    with transaction.atomic():
        claims = _targets_claim({pk: by_target[pk] for pk in runnable}, now)
        _next_runs_set([check for pk in claims for check in by_target[pk]], now)
    return [
        ClaimedRound(pk, sorted(check.pk for check in by_target[pk]), claim)
        for pk, claim in sorted(claims.items())
    ]


def due_checks(now: datetime) -> list[DueCheck]:
    rows = (
        SshTargetCheck.objects.filter(
            Q(next_run_at__isnull=True) | Q(next_run_at__lte=now),
            ssh_target__enabled=True,
            ssh_target__device__decommissioned_at__isnull=True,
        )
        # A round still running (claimed) is left alone.
        .exclude(ssh_target__claimed_until__gt=now)
        .values_list(
            "pk",
            "ssh_target_id",
            "interval_seconds",
            "ssh_target__interval_seconds",
            "ssh_check__timeout_seconds",
            "ssh_target__circuit_opened_at",
        )
    )
    return [
        DueCheck(pk, target_pk, own or default, timeout, opened)
        for pk, target_pk, own, default, timeout, opened in rows
    ]


def _group_by_target(due: list[DueCheck]) -> dict[int, list[DueCheck]]:
    grouped: dict[int, list[DueCheck]] = defaultdict(list)
    for check in due:
        grouped[check.target_pk].append(check)
    return grouped


def _skip_open_circuits(by_target: dict[int, list[DueCheck]], now: datetime) -> list[int]:
    """The targets whose circuit lets a round through; the others are marked circuit_open."""
    open_pks = [
        pk
        for pk, checks in by_target.items()
        if circuit_state(SshTarget(circuit_opened_at=checks[0].circuit_opened_at), now)
        is Circuit.OPEN
    ]
    if open_pks:
        SshTarget.objects.filter(pk__in=open_pks).exclude(
            last_status=SshTarget.LastStatus.CIRCUIT_OPEN
        ).update(last_status=SshTarget.LastStatus.CIRCUIT_OPEN)
    return sorted(by_target.keys() - set(open_pks))


def claim_lease(checks: list[DueCheck]) -> timedelta:
    """How long a round may take: every attempt's slot wait and session, the
    back-off between attempts (at its largest jitter), and time in the queue."""
    attempts = settings.SSH_CONNECT_RETRIES + 1
    session = session_lease_seconds([check.timeout_seconds for check in checks])
    per_attempt = settings.SSH_SLOT_WAIT_SECONDS + session
    backoff = sum(max_backoff_seconds(n) for n in range(settings.SSH_CONNECT_RETRIES))
    return timedelta(seconds=round(attempts * per_attempt + backoff + QUEUE_MARGIN_SECONDS))


def max_backoff_seconds(attempt: int) -> float:
    """The longest wait before retry `attempt` + 1 (the runner jitters within 0.5-1.5x)."""
    return settings.SSH_RETRY_BACKOFF_SECONDS * 2**attempt * 1.5


def _targets_claim(checks: dict[int, list[DueCheck]], now: datetime) -> dict[int, datetime]:
    """Claim the free targets among `checks`; returns {target: claimed until}.

    Inside the caller's transaction: the free rows are locked (SKIP LOCKED, so
    two dispatchers at once split the targets instead of waiting), then claimed
    in one UPDATE. A dispatcher that reads a row after the other committed finds
    it claimed. SQLite ignores the row lock but runs one writing transaction at
    a time (IMMEDIATE), which gives the same result."""
    if not checks:
        return {}
    free = SshTarget.objects.select_for_update(skip_locked=True).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lte=now),
        pk__in=list(checks),
        enabled=True,
    )
    claims = {pk: now + claim_lease(checks[pk]) for pk in free.values_list("pk", flat=True)}
    if claims:
        SshTarget.objects.filter(pk__in=list(claims)).update(claimed_until=_by_pk(claims))
    return claims


def _next_runs_set(checks: list[DueCheck], now: datetime) -> None:
    """next_run_at = now + each check's interval, in one UPDATE."""
    if checks:
        next_runs = {check.pk: now + timedelta(seconds=check.interval_seconds) for check in checks}
        SshTargetCheck.objects.filter(pk__in=list(next_runs)).update(next_run_at=_by_pk(next_runs))


def _by_pk(values: dict[int, datetime]) -> Case:
    """A CASE giving each row its value, with one branch per distinct value."""
    pks_by_value: dict[datetime, list[int]] = defaultdict(list)
    for pk, value in values.items():
        pks_by_value[value].append(pk)
    return Case(*(When(pk__in=pks, then=Value(v)) for v, pks in pks_by_value.items()))
