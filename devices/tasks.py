from datetime import datetime

from celery import Task, shared_task
from django.utils import timezone

from devices import events, services
from devices.ssh import runner, schedule


@shared_task
def mark_devices_offline() -> int:
    return len(services.devices_mark_offline())


@shared_task
def dispatch_ssh_checks() -> int:
    return schedule.ssh_checks_dispatch(now=timezone.now())


# Retries are bounded by the runner (SSH_CONNECT_RETRIES connection attempts; slot
# waits until the round's claim lapses), not by Celery's count.
@shared_task(bind=True, max_retries=None)
def run_ssh_round(
    self: Task, target_pk: int, check_pks: list[int], claim: str | None = None, attempt: int = 0
) -> str | None:
    try:
        outcome = runner.ssh_round_run(
            target_pk=target_pk,
            check_pks=check_pks,
            claim=datetime.fromisoformat(claim) if claim else None,
            attempt=attempt,
        )
    except runner.RoundRetry as retry:
        kwargs = {"claim": claim, "attempt": retry.attempt}
        raise self.retry(countdown=retry.countdown, kwargs=kwargs) from None
    return outcome.status if outcome else None


@shared_task
def prune_events() -> int:
    return events.events_prune(now=timezone.now())


@shared_task
def prune_audit_entries() -> int:
    return events.audit_entries_prune(now=timezone.now())
