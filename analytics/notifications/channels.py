"""Writes to notification channels: the API and the admin call these.

A channel's kind is fixed at creation (an email channel has addresses, a webhook
a URL and a signing secret). The secret is returned once, at creation and at
rotation; audit entries never carry it.
"""

import base64
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from analytics.models import NotificationChannel, NotificationDelivery, Severity
from analytics.notifications.delivery import attempt_record, delivery_attempt
from analytics.notifications.network import webhook_url_validate
from analytics.notifications.notify import message_id_new
from analytics.notifications.payload import channel_test_payload
from devices.events import Actor, actor_user, audit_record
from homepot.errors import ConflictError, ServiceError

Kind = NotificationChannel.Kind
EMAIL_ADDRESSES_MAX = 50
NAME_MAX_CHARS = 100
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# What a PATCH or the admin may change (the kind is fixed; the secret rotates).
UPDATABLE_FIELDS = frozenset({"name", "addresses", "url", "min_severity", "enabled"})


# --- Validation shared by the API's serializers and the admin's forms -----------------


def email_addresses_validate(addresses: list[str]) -> list[str]:
    """The addresses as stored: stripped, repeats dropped, 1 to 50 valid addresses.
    Raises ValidationError."""
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise ValidationError("A list of email addresses.", code="invalid_addresses")
    cleaned = list(dict.fromkeys(address.strip() for address in addresses if address.strip()))
    if not cleaned:
        raise ValidationError("At least one email address.", code="addresses_required")
    if len(cleaned) > EMAIL_ADDRESSES_MAX:
        raise ValidationError(
            f"At most {EMAIL_ADDRESSES_MAX} addresses.", code="too_many_addresses"
        )
    for address in cleaned:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(
                f"Not an email address: {address!r}.", code="invalid_address"
            ) from None
    return cleaned


def channel_target_validate(*, kind: str, addresses: list[str], url: str) -> tuple[list[str], str]:
    """(addresses, url) as stored for the kind: an email channel has addresses and
    no URL, a webhook a URL and no addresses. Raises ValidationError."""
    if kind == Kind.EMAIL:
        if url:
            raise ValidationError("An email channel has no URL.", code="url_not_allowed")
        return email_addresses_validate(addresses), ""
    if kind == Kind.WEBHOOK:
        if addresses:
            raise ValidationError(
                "A webhook channel has no addresses.", code="addresses_not_allowed"
            )
        url = url.strip()
        if not url:
            raise ValidationError("A webhook channel needs a URL.", code="url_required")
        webhook_url_validate(url)
        return [], url
    raise ValidationError(f"Unknown kind {kind!r}.", code="invalid_kind")


def channel_name_validate(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX_CHARS:
        raise ValidationError(f"1 to {NAME_MAX_CHARS} characters.", code="invalid_name")
    return name


def min_severity_validate(min_severity: str) -> str:
    if min_severity not in Severity.values:
        raise ValidationError(f"One of {', '.join(Severity.values)}.", code="invalid_min_severity")
    return min_severity


def webhook_secret_new() -> str:
    """ "whsec_" + base64 of 24 random bytes, as Standard Webhooks secrets are written."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# --- Services -----------------------------------------------------------------------------


def notification_channel_create(
    *,
    actor: Actor,
    name: str,
    kind: str,
    addresses: list[str] | None = None,
    url: str = "",
    min_severity: str = Severity.INFO,
    enabled: bool = True,
) -> tuple[NotificationChannel, str | None]:
    """A channel, audited; for a webhook also its signing secret, returned here
    only (None for email). ServiceError on invalid input, ConflictError on a
    name in use."""
    with _field(_target_field(kind)):
        addresses, url = channel_target_validate(kind=kind, addresses=addresses or [], url=url)
    with _field("name"):
        name = channel_name_validate(name)
    with _field("min_severity"):
        min_severity = min_severity_validate(min_severity)
    secret = webhook_secret_new() if kind == Kind.WEBHOOK else None
    channel = NotificationChannel(
        name=name,
        kind=kind,
        addresses=addresses,
        url=url,
        secret=secret or "",
        min_severity=min_severity,
        enabled=enabled,
        created_by=actor_user(actor),
    )
    with transaction.atomic():
        _save_named(channel)
        audit_record(
            actor=actor,
            action="notification_channel.create",
            target=channel,
            data=_audit_fields(channel, ["name", "kind", *_target_fields(channel)]),
        )
    return channel, secret


def notification_channel_update(
    *, actor: Actor, channel: NotificationChannel, changes: dict[str, Any]
) -> NotificationChannel:
    """Apply the changes that differ from the stored channel, audited with them.
    `changes` holds some of UPDATABLE_FIELDS; ServiceError on invalid values."""
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    with transaction.atomic():
        channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
        cleaned = _changes_validate(channel, changes)
        changed = [name for name, value in cleaned.items() if getattr(channel, name) != value]
        if not changed:
            return channel
        for name in changed:
            setattr(channel, name, cleaned[name])
        _save_named(channel, update_fields=changed)
        audit_record(
            actor=actor,
            action="notification_channel.change",
            target=channel,
            data={"changed": _audit_fields(channel, changed)},
        )
    return channel


def _changes_validate(channel: NotificationChannel, changes: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(changes)
    if "name" in changes:
        with _field("name"):
            cleaned["name"] = channel_name_validate(changes["name"])
    if "min_severity" in changes:
        with _field("min_severity"):
            min_severity_validate(changes["min_severity"])
    if "addresses" in changes or "url" in changes:
        with _field(_target_field(channel.kind)):
            cleaned["addresses"], cleaned["url"] = channel_target_validate(
                kind=channel.kind,
                addresses=changes.get("addresses", channel.addresses),
                url=changes.get("url", channel.url),
            )
    return cleaned


def notification_channel_secret_rotate(*, actor: Actor, channel: NotificationChannel) -> str:
    """A new signing secret for a webhook channel, returned once. Deliveries from
    now on are signed with it (retries of earlier ones too)."""
    if channel.kind != Kind.WEBHOOK:
        raise ServiceError("Only webhook channels have a secret.", code="not_a_webhook")
    secret = webhook_secret_new()
    with transaction.atomic():
        NotificationChannel.objects.filter(pk=channel.pk).update(secret=secret)
        audit_record(actor=actor, action="notification_channel.rotate_secret", target=channel)
    channel.secret = secret
    return secret


def notification_channel_test(
    *, channel: NotificationChannel, actor: Actor
) -> NotificationDelivery:
    """Send a `test` notification now, one attempt, and record it in the delivery
    log (delivered or failed, never retried). Disabled channels can be tested."""
    now = timezone.now()
    delivery = NotificationDelivery.objects.create(
        channel=channel,
        event_type=NotificationDelivery.EventType.TEST,
        message_id=message_id_new(),
        payload=channel_test_payload(channel=channel, now=now),
    )
    result = delivery_attempt(delivery, now=now)
    attempt_record(delivery, result, now=now, retry=False)
    audit_record(
        actor=actor,
        action="notification_channel.test",
        target=channel,
        data={"status": delivery.status, "error": delivery.last_error},
    )
    return delivery


# --- Helpers ----------------------------------------------------------------------------------


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Turns a ValidationError into a ServiceError naming the field."""
    try:
        yield
    except ValidationError as exc:
        raise ServiceError(f"{name}: {exc.messages[0]}", code=exc.code) from None


def _target_field(kind: str) -> str:
    return {Kind.EMAIL: "addresses", Kind.WEBHOOK: "url"}.get(kind, "kind")


def _save_named(channel: NotificationChannel, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            channel.save(update_fields=update_fields)
    except IntegrityError:
        raise ConflictError(
            f"A channel named {channel.name!r} exists.", code="name_in_use"
        ) from None


def _target_fields(channel: NotificationChannel) -> list[str]:
    fields = ["addresses"] if channel.kind == Kind.EMAIL else ["url"]
    return [*fields, "min_severity", "enabled"]


def _audit_fields(channel: NotificationChannel, names: list[str]) -> dict[str, Any]:
    # Never the secret: it is not among the fields a caller names.
    return {name: getattr(channel, name) for name in names}
