"""What operators do to alerts and silences, the built-in rules, and retention.

Every alert transition locks the alert row (select_for_update) and re-reads its
state first; the evaluator locks the alerts it moves the same way, so an
operator's resolve and an automatic one cannot both happen, nor notify twice.

Silences: an alert a silence covers still opens, changes state and records its
events, but notifies no one. A silence covers an alert when each of its
site, device and rule is empty or matches; all three empty is a fleet-wide
silence, which `silence_create` only makes when asked to explicitly.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from analytics.models import Alert, AlertRule, NotificationDelivery, Severity, Silence
from devices.events import (
    Actor,
    actor_user,
    audit_record,
    event_build,
    event_record,
    events_record,
    rows_prune,
)
from devices.models import Device, Event, Site
from homepot.errors import ConflictError, ServiceError
from homepot.post_migrate import synced_model

SILENCE_MAX = timedelta(days=365)
SILENCE_FROM_ALERT_MAX_HOURS = 24 * 365


# --- Notifying ----------------------------------------------------------------------


def alert_notify(alert: Alert, *, event_type: str, sequence: int = 0, now: datetime) -> None:
    """Queue the notifications of one transition (inside its transaction)."""
    # Imported here: notifications queue through analytics.tasks, which imports this.
    from analytics.notifications import notifications_enqueue

    notifications_enqueue(alert=alert, event_type=event_type, sequence=sequence, now=now)


# --- Silences -----------------------------------------------------------------------


def silences_active(now: datetime) -> QuerySet[Silence]:
    return Silence.objects.filter(starts_at__lte=now, ends_at__gt=now)


def silence_covers(silence: Silence, *, rule_pk: int, device_pk: int, site_pk: int) -> bool:
    """Whether `silence` covers an alert of this rule on this device (of this site)."""
    return (
        silence.site_id in (None, site_pk)
        and silence.device_id in (None, device_pk)
        and silence.rule_id in (None, rule_pk)
    )


def silences_covering(
    silences: Iterable[Silence], *, rule_pk: int, device_pk: int, site_pk: int
) -> list[int]:
    """The primary keys of the silences (already loaded) that cover an alert."""
    return [
        s.pk
        for s in silences
        if silence_covers(s, rule_pk=rule_pk, device_pk=device_pk, site_pk=site_pk)
    ]


def alert_silences(alert: Alert, now: datetime) -> list[int]:
    """The primary keys of the silences covering `alert` at `now`."""
    site_pk = Device.objects.filter(pk=alert.device_id).values("site_id")
    covering = (
        silences_active(now)
        .filter(Q(site__isnull=True) | Q(site_id__in=site_pk))
        .filter(Q(device__isnull=True) | Q(device_id=alert.device_id))
        .filter(Q(rule__isnull=True) | Q(rule_id=alert.rule_id))
    )
    return list(covering.order_by("pk").values_list("pk", flat=True))


def alert_is_silenced(alert: Alert, now: datetime) -> bool:
    return bool(alert_silences(alert, now))


def silenced_event_build(
    alert: Alert, *, transition: str, device_public_id: str, silenced_by: list[int]
) -> Event:
    """The event saying a transition notified no one because silences cover it."""
    return event_build(
        kind="alert.silenced",
        device=alert.device_id,
        alert=alert,
        message=f"{transition} of {alert.rule.name} on {device_public_id} not notified: silenced",
        data={"transition": transition, "silenced_by": silenced_by},
    )


def silence_create(
    *,
    actor: Actor,
    site: Site | None = None,
    device: Device | None = None,
    rule: AlertRule | None = None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    fleet_wide: bool = False,
    now: datetime | None = None,
) -> Silence:
    """A maintenance window over the alerts of a site, a device, a rule (any
    combination narrows it), or, with `fleet_wide`, every alert."""
    now = now or timezone.now()
    reason = reason.strip()
    _check_silence_scope(site=site, device=device, rule=rule, fleet_wide=fleet_wide)
    _check_silence_window(starts_at=starts_at, ends_at=ends_at, now=now)
    if not reason:
        raise ServiceError("Say why alerts are silenced (reason).", code="reason_required")
    if len(reason) > Silence._meta.get_field("reason").max_length:
        raise ServiceError("The reason is longer than 500 characters.", code="reason_too_long")
    silence = Silence.objects.create(
        site=site,
        device=device,
        rule=rule,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=actor_user(actor),
    )
    audit_record(actor=actor, action="silence.create", target=silence, data=_silence_data(silence))
    return silence


def _check_silence_scope(
    *, site: Site | None, device: Device | None, rule: AlertRule | None, fleet_wide: bool
) -> None:
    scoped = site is not None or device is not None or rule is not None
    if fleet_wide and scoped:
        raise ServiceError(
            "A fleet-wide silence names no site, device or rule.", code="silence_scope_conflict"
        )
    if not fleet_wide and not scoped:
        raise ServiceError(
            "Name a site, a device or a rule, or ask for a fleet-wide silence (fleet_wide).",
            code="silence_scope_required",
        )
    if site is not None and device is not None and device.site_id != site.pk:
        raise ServiceError(
            f"Device {device.public_id} is not at site {site.public_id}.",
            code="device_not_in_site",
        )


def _check_silence_window(*, starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if ends_at <= starts_at:
        raise ServiceError("A silence ends after it starts.", code="invalid_silence_window")
    if ends_at - starts_at > SILENCE_MAX:
        raise ServiceError("A silence lasts at most a year.", code="silence_too_long")
    if ends_at <= now:
        raise ServiceError("This silence would already be over.", code="silence_in_past")


def _silence_data(silence: Silence) -> dict[str, Any]:
    return {
        "site": silence.site_id,
        "device": silence.device_id,
        "rule": silence.rule_id,
        "starts_at": silence.starts_at.isoformat(),
        "ends_at": silence.ends_at.isoformat(),
        "reason": silence.reason,
    }


def silence_delete(*, silence: Silence, actor: Actor) -> None:
    """End a silence early (or drop a planned one). Firing alerts it held back are
    notified at the next evaluation."""
    data = _silence_data(silence)
    pk = silence.pk
    silence.delete()
    silence.pk = pk  # the audit entry names it
    audit_record(actor=actor, action="silence.delete", target=silence, data=data)


def silence_from_alert(
    *, alert: Alert, actor: Actor, hours: float, reason: str = "", now: datetime | None = None
) -> Silence:
    """One click: silence this alert's rule on its device for `hours` from now."""
    now = now or timezone.now()
    if not 0 < hours <= SILENCE_FROM_ALERT_MAX_HOURS:
        raise ServiceError(
            f"Silence for more than 0 and at most {SILENCE_FROM_ALERT_MAX_HOURS} hours.",
            code="invalid_silence_hours",
        )
    return silence_create(
        actor=actor,
        device=alert.device,
        rule=alert.rule,
        starts_at=now,
        ends_at=now + timedelta(hours=hours),
        reason=reason.strip() or f"silenced from alert {alert.pk}",
        now=now,
    )


# --- Acknowledge and resolve --------------------------------------------------------


def _alert_locked(alert: Alert) -> Alert:
    return (
        Alert.objects.select_for_update(of=("self",))
        .select_related("rule", "device")
        .get(pk=alert.pk)
    )


def alert_acknowledge(
    *, alert: Alert, actor: Actor, note: str = "", now: datetime | None = None
) -> Alert:
    """firing -> acknowledged: someone is on it, so no more reminders. Acknowledging
    an acknowledged alert changes nothing; a resolved one answers 409."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _alert_locked(alert)
        if locked.state == Alert.State.RESOLVED:
            raise ConflictError("The alert is already resolved.", code="alert_resolved")
        if locked.state == Alert.State.ACKNOWLEDGED:
            return locked
        locked.state = Alert.State.ACKNOWLEDGED
        locked.acknowledged_at = now
        locked.acknowledged_by = actor_user(actor)
        locked.ack_note = note.strip()[:500]
        locked.save(update_fields=["state", "acknowledged_at", "acknowledged_by", "ack_note"])
        who = _actor_label(actor)
        event_record(
            kind="alert.acknowledged",
            device=locked.device_id,
            alert=locked,
            message=f"{locked.rule.name} on {locked.device.public_id} acknowledged by {who}",
            by=who,
            note=locked.ack_note,
        )
        audit_record(
            actor=actor, action="alert.acknowledge", target=locked, data={"note": locked.ack_note}
        )
    return locked


def alert_resolve(*, alert: Alert, actor: Actor, now: datetime | None = None) -> Alert:
    """Resolve by hand (notifies `alert.resolved` unless silenced).

    If the condition still holds, the rule fires a new alert once its
    cooldown_seconds have passed since this resolve and the condition has held
    for for_seconds again: resolving says "fixed", silencing says "I know".
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _alert_locked(alert)
        if locked.state == Alert.State.RESOLVED:
            raise ConflictError("The alert is already resolved.", code="alert_resolved")
        locked.state = Alert.State.RESOLVED
        locked.resolved_at = now
        locked.resolved_by = actor_user(actor)
        locked.save(update_fields=["state", "resolved_at", "resolved_by"])
        silenced_by = alert_silences(locked, now)
        who = _actor_label(actor)
        resolved = event_build(
            kind="alert.resolved",
            device=locked.device_id,
            alert=locked,
            message=f"{locked.rule.name} on {locked.device.public_id} resolved by {who}",
            data={"by": who, "reason": "by hand", "notified": not silenced_by},
        )
        if silenced_by:
            silenced = silenced_event_build(
                locked,
                transition=resolved.kind,
                device_public_id=locked.device.public_id,
                silenced_by=silenced_by,
            )
            events_record([resolved, silenced])
        else:
            events_record([resolved])
            alert_notify(locked, event_type=NotificationDelivery.EventType.RESOLVED, now=now)
        audit_record(actor=actor, action="alert.resolve", target=locked)
    return locked


def _actor_label(actor: Actor) -> str:
    user = actor_user(actor)
    return user.get_username() if user is not None else "system"


# --- Retention ----------------------------------------------------------------------


def alerts_prune(*, now: datetime) -> int:
    """Delete alerts resolved more than ALERT_RETENTION_DAYS ago (their deliveries
    go with them; their events stay until the event log's own retention)."""
    cutoff = now - timedelta(days=settings.ALERT_RETENTION_DAYS)
    return rows_prune(
        Alert.objects.filter(state=Alert.State.RESOLVED, resolved_at__lt=cutoff),
        batch=settings.RETENTION_BATCH_SIZE,
    )


def notification_deliveries_prune(*, now: datetime) -> int:
    """Delete deliveries created more than NOTIFICATION_RETENTION_DAYS ago (their
    retries ended long before)."""
    cutoff = now - timedelta(days=settings.NOTIFICATION_RETENTION_DAYS)
    return rows_prune(
        NotificationDelivery.objects.filter(created_at__lt=cutoff),
        batch=settings.RETENTION_BATCH_SIZE,
    )


# --- Built-in rules -----------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinRule:
    source: str  # also the rule's `builtin` key
    name: str
    severity: str
    for_seconds: int
    cooldown_seconds: int


BUILTIN_RULES = (
    # The offline sweep already waited the check-in interval plus a grace.
    BuiltinRule(AlertRule.Source.DEVICE_OFFLINE, "Device offline", Severity.CRITICAL, 0, 300),
    # One failed round is often a blip: two minutes is two check rounds at the default.
    BuiltinRule(AlertRule.Source.SSH_FAILING, "SSH check failing", Severity.WARNING, 120, 300),
    # A changed host key is either a reinstalled board or someone in the middle.
    BuiltinRule(
        AlertRule.Source.SSH_HOST_KEY_MISMATCH, "SSH host key mismatch", Severity.CRITICAL, 0, 0
    ),
)


def alert_rules_builtin_sync(**kwargs: Any) -> None:
    """post_migrate: create the built-in rules that are missing. An existing one
    is never changed (operators edit them; disable one rather than delete it:
    a deleted built-in rule comes back at the next migrate)."""
    using = kwargs.get("using", "default")
    model = synced_model(kwargs, AlertRule)
    if model is None:
        return
    for rule in BUILTIN_RULES:
        model.objects.using(using).get_or_create(
            builtin=str(rule.source),
            defaults={
                "name": rule.name,
                "source": str(rule.source),
                "severity": str(rule.severity),
                "for_seconds": rule.for_seconds,
                "cooldown_seconds": rule.cooldown_seconds,
                "enabled": True,
            },
        )
