from celery import shared_task
from django.utils import timezone

from devices import events, services


@shared_task
def mark_devices_offline() -> int:
    return len(services.devices_mark_offline())


@shared_task
def prune_events() -> int:
    return events.events_prune(now=timezone.now())


@shared_task
def prune_audit_entries() -> int:
    return events.audit_entries_prune(now=timezone.now())
