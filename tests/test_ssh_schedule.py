"""Beat's dispatch of SSH checks: which are due, one claimed round per target,
the circuit breaker, and two dispatchers at once. The clock is passed in, never slept."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Device, SshTarget, SshTargetCheck
from devices.ssh.schedule import ClaimedRound, ssh_checks_dispatch, ssh_rounds_claim
from homepot import celery_app
from tests.ssh_targets import check_make, target_make

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def rounds_of(rounds: list[ClaimedRound]) -> dict[int, list[int]]:
    return {r.target_pk: r.check_pks for r in rounds}


def check_pks(target: SshTarget) -> list[int]:
    return sorted(target.target_checks.values_list("pk", flat=True))


@pytest.fixture
def checks(db) -> list:  # noqa: ANN001
    return [check_make("load-probe"), check_make("temp-probe"), check_make("mem-probe")]


def test_it_claims_one_round_per_target_with_all_its_due_checks(site, checks) -> None:
    first = target_make(site, "wet-1", checks, interval_seconds=60)
    second = target_make(site, "wet-2", checks[:1], interval_seconds=30)

    rounds = ssh_rounds_claim(now=T0)

    assert rounds_of(rounds) == {first.pk: check_pks(first), second.pk: check_pks(second)}
    first.refresh_from_db()
    assert first.claimed_until > T0


def test_it_moves_each_claimed_check_on_by_its_own_interval(site, checks) -> None:
    target = target_make(site, "wet-1", checks[:2], interval_seconds=60)
    own = target.target_checks.get(ssh_check=checks[1])
    own.interval_seconds = 15
    own.save()

    ssh_rounds_claim(now=T0)

    next_runs = dict(target.target_checks.values_list("ssh_check__name", "next_run_at"))
    assert next_runs == {
        "load-probe": T0 + timedelta(seconds=60),
        "temp-probe": T0 + timedelta(seconds=15),
    }


def test_checks_not_yet_due_wait_and_due_ones_of_a_target_go_together(site, checks) -> None:
    target = target_make(site, "wet-1", checks)
    target.target_checks.filter(ssh_check=checks[2]).update(next_run_at=T0 + timedelta(seconds=1))
    target.target_checks.filter(ssh_check=checks[1]).update(next_run_at=T0)

    (claimed,) = ssh_rounds_claim(now=T0)

    due = target.target_checks.exclude(ssh_check=checks[2]).values_list("pk", flat=True)
    assert claimed.check_pks == sorted(due)


def test_a_target_whose_round_runs_is_skipped_until_its_claim_lapses(site, checks) -> None:
    target = target_make(site, "wet-1", checks[:1])
    (claimed,) = ssh_rounds_claim(now=T0)
    # Its check would be due again, but the round is still running.
    target.target_checks.update(next_run_at=None)

    assert ssh_rounds_claim(now=T0 + timedelta(seconds=1)) == []
    assert rounds_of(ssh_rounds_claim(now=claimed.claim)) == {target.pk: check_pks(target)}


def test_disabled_targets_and_decommissioned_devices_are_not_dispatched(site, checks) -> None:
    target_make(site, "wet-off", checks[:1], enabled=False)
    gone = target_make(site, "wet-gone", checks[:1])
    Device.objects.filter(pk=gone.device_id).update(decommissioned_at=T0)

    assert ssh_rounds_claim(now=T0) == []


def test_an_open_circuit_skips_the_round_and_says_so(site, checks, settings) -> None:
    settings.SSH_BREAKER_COOLDOWN_SECONDS = 300
    target = target_make(site, "wet-1", checks[:1], circuit_opened_at=T0, consecutive_failures=3)

    assert ssh_rounds_claim(now=T0 + timedelta(seconds=299)) == []

    target.refresh_from_db()
    assert target.last_status == SshTarget.LastStatus.CIRCUIT_OPEN
    assert target.claimed_until is None
    # Still due: the trial round starts at the first dispatch after the cool-down.
    assert SshTargetCheck.objects.get(ssh_target=target).next_run_at is None


def test_after_the_cool_down_one_trial_round_runs(site, checks, settings) -> None:
    settings.SSH_BREAKER_COOLDOWN_SECONDS = 300
    target = target_make(site, "wet-1", checks[:2], circuit_opened_at=T0)
    half_open = T0 + timedelta(seconds=300)

    assert rounds_of(ssh_rounds_claim(now=half_open)) == {target.pk: check_pks(target)}
    # The trial holds the claim: no second trial while it runs.
    target.target_checks.update(next_run_at=None)
    assert ssh_rounds_claim(now=half_open + timedelta(seconds=5)) == []


def test_dispatch_costs_the_same_queries_for_two_targets_or_twenty(site, checks) -> None:
    def queries_for(count: int, prefix: str) -> int:
        for n in range(count):
            target_make(site, f"{prefix}-{n}", checks)
        with CaptureQueriesContext(connection) as queries:
            assert len(ssh_rounds_claim(now=T0)) == count
        return len(queries)

    assert queries_for(2, "few") == queries_for(20, "many")


def queued_rounds() -> list[tuple[str, list, dict]]:
    """Take the messages waiting in the broker's default queue: (task, args, kwargs)."""
    found = []
    with celery_app.connection_for_read() as conn, conn.SimpleQueue("celery") as queue:
        while True:
            try:
                message = queue.get(block=True, timeout=0.5)
            except queue.Empty:
                return found
            args, kwargs, _ = message.payload
            found.append((message.headers["task"], args, kwargs))
            message.ack()


@pytest.fixture
def empty_broker() -> None:
    queued_rounds()
    yield
    queued_rounds()


def test_dispatch_queues_one_run_ssh_round_per_target_after_commit(
    site, checks, empty_broker, django_capture_on_commit_callbacks
) -> None:
    first = target_make(site, "wet-1", checks[:2])
    second = target_make(site, "wet-2", checks[2:])

    with django_capture_on_commit_callbacks(execute=True):
        assert ssh_checks_dispatch(now=T0) == 2
        assert queued_rounds() == []  # nothing leaves before the claims are committed

    claims = dict(SshTarget.objects.values_list("pk", "claimed_until"))
    assert sorted(queued_rounds()) == [
        ("devices.tasks.run_ssh_round", [t.pk, check_pks(t)], {"claim": claims[t.pk].isoformat()})
        for t in (first, second)
    ]


def test_beat_schedules_the_dispatch_task() -> None:
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["dispatch-ssh-checks"]["task"] == (
        "devices.tasks.dispatch_ssh_checks"
    )


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_claim_one_target_twice(site) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    checks = [check_make("load-probe"), check_make("temp-probe")]
    targets = [target_make(site, f"wet-{n}", checks) for n in range(40)]
    for attempt in range(5):
        now = T0 + timedelta(hours=attempt)
        SshTarget.objects.update(claimed_until=None)
        SshTargetCheck.objects.update(next_run_at=None)
        claimed = _claim_from_two_threads(now)

        first, second = ({r.target_pk for r in rounds} for rounds in claimed)
        assert first.isdisjoint(second)
        assert first | second == {t.pk for t in targets}


def _claim_from_two_threads(now: datetime) -> list[list[ClaimedRound]]:
    start = threading.Barrier(2)
    results: list[list[ClaimedRound]] = [[], []]

    def dispatcher(index: int) -> None:
        try:
            start.wait()
            results[index] = ssh_rounds_claim(now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results
