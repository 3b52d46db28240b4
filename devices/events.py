"""The event log and the audit trail: the one place their rows are written and pruned.

Events say what happened in the fleet (presence, command and alert transitions); audit
entries say who did what (a user, a device, or the system). Each has one
writer (`events_record`, `audit_entries_record`) that takes a batch, so a
set-based transition writes its rows in one INSERT; `event_record` and
`audit_record` are the one-row forms of them.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model, QuerySet

from devices.event_kinds import EVENT_KINDS
from devices.identity import DeviceIdentity
from devices.models import AuditEntry, Device, Event

Actor = AbstractBaseUser | DeviceIdentity | None


def actor_user(actor: Actor) -> AbstractBaseUser | None:
    """The Django user behind an actor, if a user (not a device or the system) acts."""
    return actor if isinstance(actor, AbstractBaseUser) else None


# --- Events -------------------------------------------------------------------------


def event_build(
    *,
    kind: str,
    device: Device | int | None,
    message: str = "",
    command: Model | int | None = None,
    alert: Model | int | None = None,
    data: dict | None = None,
) -> Event:
    """An unsaved event; `device`, `command` and `alert` may be instances or primary keys."""
    return Event(
        device_id=_pk(device),
        command_id=_pk(command),
        alert_id=_pk(alert),
        kind=kind,
        message=message,
        data=data or {},
    )


def events_record(events: Sequence[Event]) -> list[Event]:
    """Write events (one INSERT for the batch). Every kind must be registered in
    devices/event_kinds.py: the feed documents them and integrations filter on them."""
    unregistered = {event.kind for event in events} - EVENT_KINDS.keys()
    if unregistered:
        raise ValueError(f"Unregistered event kinds (add to event_kinds.py): {unregistered}")
    return Event.objects.bulk_create(events) if events else []


def event_record(
    *,
    kind: str,
    device: Device | int | None,
    message: str = "",
    command: Model | int | None = None,
    alert: Model | int | None = None,
    **data: Any,
) -> Event:
    event = event_build(
        kind=kind, device=device, message=message, command=command, alert=alert, data=data
    )
    return events_record([event])[0]


def _pk(thing: Model | int | None) -> int | None:
    return thing.pk if isinstance(thing, Model) else thing


# --- Audit trail --------------------------------------------------------------------


def audit_build(
    *, actor: Actor | Device, action: str, target: Any, data: dict | None = None
) -> AuditEntry:
    """An unsaved audit entry: who (user, device or "system"), what, on which thing."""
    device_pk = actor.pk if isinstance(actor, DeviceIdentity | Device) else None
    return AuditEntry(
        actor_user=actor_user(actor),
        actor_device_id=device_pk,
        actor=_actor_name(actor),
        action=action,
        target_type=type(target).__name__.lower(),
        target_id=_public_id(target),
        data=data or {},
    )


def _actor_name(actor: Actor | Device) -> str:
    """How the entry names its actor: a device by its public id, a user by name."""
    if actor is None:
        return "system"
    if isinstance(actor, DeviceIdentity | Device):
        return actor.public_id
    return str(actor)


def audit_entries_record(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Write audit entries (one INSERT for the batch)."""
    return AuditEntry.objects.bulk_create(entries) if entries else []


def audit_record(
    *, actor: Actor | Device, action: str, target: Any, data: dict | None = None
) -> AuditEntry:
    return audit_entries_record(
        [audit_build(actor=actor, action=action, target=target, data=data)]
    )[0]


def _public_id(target: Any) -> str:
    """The id operators know a thing by: its public id (devices, sites, commands,
    command groups), else its primary key."""
    public_id = getattr(target, "public_id", None)
    return str(public_id) if public_id is not None else str(target.pk)


# --- Retention ----------------------------------------------------------------------


def rows_prune(queryset: QuerySet, *, batch: int) -> int:
    """Delete the rows of `queryset` in batches of at most `batch` primary keys,
    so one run never holds a long lock or a huge transaction; returns how many
    rows went (rows cascaded to are not counted)."""
    deleted = 0
    while True:
        pks = list(queryset.order_by().values_list("pk", flat=True)[:batch])
        if not pks:
            return deleted
        _, per_model = queryset.model.objects.filter(pk__in=pks).delete()
        deleted += per_model.get(queryset.model._meta.label, 0)
        if len(pks) < batch:
            return deleted


def events_prune(*, now: datetime) -> int:
    """Delete events older than EVENT_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.EVENT_RETENTION_DAYS)
    return rows_prune(
        Event.objects.filter(created_at__lt=cutoff), batch=settings.RETENTION_BATCH_SIZE
    )


def audit_entries_prune(*, now: datetime) -> int:
    """Delete audit entries older than AUDIT_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    return rows_prune(
        AuditEntry.objects.filter(created_at__lt=cutoff), batch=settings.RETENTION_BATCH_SIZE
    )
