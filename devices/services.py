"""Writes to the fleet: sites, enrollment, keys, presence. Views and the admin call these."""

import json
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from devices.auth import DeviceIdentity, TooManyRequests, auth_generation_reset
from devices.events import Actor, actor_user, audit_record, event_record
from devices.identity import instance_seen
from devices.keys import hash_secret, new_api_key, new_enrollment_token, sha256_hex
from devices.models import Device, DeviceCredential, EnrollmentToken, Site
from devices.selectors import site_get
from homepot.errors import ConflictError, CredentialRejected, Forbidden

logger = logging.getLogger(__name__)

# The heartbeat attribute in which HOMEPOT's agent names its process (random per start).
INSTANCE_ID_ATTRIBUTE = "instance_id"


# --- Sites and enrollment tokens ------------------------------------------------------------


def site_create(*, actor: Actor, public_id: str, name: str, **fields: Any) -> Site:
    if Site.objects.filter(public_id=public_id).exists():
        raise ConflictError(f"Site {public_id!r} already exists.", code="site_exists")
    site = Site.objects.create(public_id=public_id, name=name, **fields)
    audit_record(actor=actor, action="site.create", target=site)
    return site


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once
    enrollment: EnrollmentToken


def enrollment_token_create(
    *,
    actor: Actor,
    site: Site,
    expires_in: timedelta | None = None,
    max_uses: int = 1,
    label: str = "",
) -> IssuedToken:
    token = new_enrollment_token()
    expires_in = expires_in or timedelta(hours=settings.ENROLLMENT_TOKEN_DEFAULT_HOURS)
    enrollment = EnrollmentToken.objects.create(
        site=site,
        label=label,
        token_hash=sha256_hex(token),
        expires_at=timezone.now() + expires_in,
        max_uses=max_uses,
        created_by=actor_user(actor),
    )
    audit_record(
        actor=actor,
        action="enrollment_token.create",
        target=enrollment,
        data={"site": site.public_id, "max_uses": max_uses, "label": label},
    )
    return IssuedToken(token=token, enrollment=enrollment)


def enrollment_token_revoke(*, actor: Actor, enrollment: EnrollmentToken) -> None:
    revoked = EnrollmentToken.objects.filter(pk=enrollment.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        audit_record(actor=actor, action="enrollment_token.revoke", target=enrollment)


def _enrollment_token_consume(*, token: str, site: Site) -> EnrollmentToken:
    """Use up one use of the token, or say exactly why it cannot be used."""
    enrollment = EnrollmentToken.objects.filter(token_hash=sha256_hex(token)).first()
    now = timezone.now()
    if enrollment is None:
        raise CredentialRejected("Enrollment token not recognised.", code="token_unknown")
    if enrollment.revoked_at is not None:
        raise CredentialRejected("Enrollment token has been revoked.", code="token_revoked")
    if enrollment.expires_at <= now:
        raise CredentialRejected("Enrollment token has expired.", code="token_expired")
    if enrollment.site_id != site.pk:
        raise Forbidden("Enrollment token belongs to another site.", code="token_wrong_site")
    # Conditional UPDATE: two registrations racing for the last use cannot both win.
    consumed = EnrollmentToken.objects.filter(
        pk=enrollment.pk, revoked_at__isnull=True, expires_at__gt=now, uses__lt=F("max_uses")
    ).update(uses=F("uses") + 1)
    if not consumed:
        raise Forbidden("Enrollment token has no uses left.", code="token_used_up")
    return enrollment


# --- Devices and keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    api_key: str  # shown once
    credential: DeviceCredential
    old_key_valid_until: datetime | None = None


def _credential_issue(*, device: Device, actor: Actor) -> IssuedKey:
    key = new_api_key()
    credential = DeviceCredential.objects.create(
        device=device,
        key_id=key.key_id,
        key_hash=hash_secret(key),
        created_by=actor_user(actor),
    )
    return IssuedKey(api_key=key.api_key, credential=credential)


def device_register(
    *,
    site_public_id: str,
    actor: Actor,
    enrollment_token: str | None,
    public_id: str,
    checkin_interval_seconds: int | None = None,
    **fields: Any,
) -> tuple[Device, IssuedKey]:
    """Create a device and its first key, by enrollment token or by an operator."""
    site = site_get(site_public_id)
    if checkin_interval_seconds is not None:
        fields["checkin_interval"] = timedelta(seconds=checkin_interval_seconds)
    with transaction.atomic():
        enrollment = (
            _enrollment_token_consume(token=enrollment_token, site=site)
            if enrollment_token
            else None
        )
        if Device.objects.filter(public_id=public_id).exists():
            raise ConflictError(f"Device {public_id!r} already exists.", code="device_exists")
        try:
            with transaction.atomic():
                device = Device.objects.create(site=site, public_id=public_id, **fields)
        except IntegrityError:  # lost a race with an identical registration
            raise ConflictError(
                f"Device {public_id!r} already exists.", code="device_exists"
            ) from None
        issued = _credential_issue(device=device, actor=actor)
        audit_record(
            # Enrolling with a token, the device speaks for itself.
            actor=actor if actor is not None else device,
            action="device.register",
            target=device,
            data={
                "site": site.public_id,
                "enrollment_token": enrollment.pk if enrollment else None,
            },
        )
        event_record(kind="device.registered", device=device)
    return device, issued


def device_key_rotate(*, device: Device, actor: Actor) -> IssuedKey:
    """Issue a new key. A device rotating its own key keeps the old one for a
    short grace so that an answer lost on the way cannot lock it out; an
    operator's rotation retires the old key at once."""
    if device.decommissioned_at is not None:
        raise ConflictError("Device is decommissioned.", code="decommissioned")
    now = timezone.now()
    by_device = isinstance(actor, DeviceIdentity)
    grace = timedelta(seconds=settings.DEVICE_KEY_ROTATION_GRACE_SECONDS) if by_device else None
    with transaction.atomic():
        old = DeviceCredential.objects.filter(device=device, revoked_at__isnull=True)
        if grace is not None:
            _self_rotation_claim(device=device, identity=actor, now=now, grace=grace)
            old.exclude(expires_at__lt=now + grace).update(expires_at=now + grace)
        else:
            old.update(revoked_at=now)
        issued = _credential_issue(device=device, actor=actor)
        audit_record(
            actor=actor,
            action="device.rotate_key",
            target=device,
            data={
                "key_id": issued.credential.key_id,
                "grace_seconds": int(grace.total_seconds()) if grace else 0,
            },
        )
        auth_generation_reset(device.public_id)
    if grace is not None:
        return replace(issued, old_key_valid_until=now + grace)
    return issued


def _self_rotation_claim(
    *, device: Device, identity: DeviceIdentity, now: datetime, grace: timedelta
) -> None:
    """Let a device rotate only from its current key, and only once per interval.

    Both are conditional UPDATEs: of two concurrent rotations with one key, the
    second finds the key already retiring. Raising rolls back the transaction,
    so a refused attempt changes nothing.
    """
    # A key in its grace period may not rotate: each rotation from a retiring
    # key would mint a new key, and the chain would never expire.
    retired = DeviceCredential.objects.filter(
        pk=identity.credential_pk, device=device, revoked_at__isnull=True, expires_at__isnull=True
    ).update(expires_at=now + grace)
    if not retired:
        raise Forbidden(
            "Only the device's current key may rotate it; this key is being retired.",
            code="key_not_current",
        )
    interval = timedelta(seconds=settings.DEVICE_KEY_SELF_ROTATION_MIN_SECONDS)
    claimed = (
        Device.objects.filter(pk=device.pk)
        .filter(Q(key_self_rotated_at__isnull=True) | Q(key_self_rotated_at__lte=now - interval))
        .update(key_self_rotated_at=now)
    )
    if not claimed:
        last = Device.objects.values_list("key_self_rotated_at", flat=True).get(pk=device.pk)
        wait = max(1, math.ceil((last + interval - now).total_seconds()))
        raise TooManyRequests(
            f"A device may rotate its own key once per {interval.total_seconds():.0f} s.",
            code="rotation_too_soon",
            wait=wait,
        )


def device_keys_revoke(*, device: Device, actor: Actor) -> int:
    """Revoke every key of the device; it cannot authenticate until rotated."""
    with transaction.atomic():
        count = DeviceCredential.objects.filter(device=device, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit_record(actor=actor, action="device.revoke_keys", target=device, data={"keys": count})
        auth_generation_reset(device.public_id)
    return count


def device_decommission(*, device: Device, actor: Actor) -> None:
    now = timezone.now()
    with transaction.atomic():
        changed = Device.objects.filter(pk=device.pk, decommissioned_at__isnull=True).update(
            decommissioned_at=now, status=Device.Status.DECOMMISSIONED
        )
        if not changed:
            raise ConflictError("Device is already decommissioned.", code="decommissioned")
        DeviceCredential.objects.filter(device=device, revoked_at__isnull=True).update(
            revoked_at=now
        )
        audit_record(actor=actor, action="device.decommission", target=device)
        event_record(kind="device.decommissioned", device=device)
        auth_generation_reset(device.public_id)
    device.refresh_from_db()


# --- Presence ------------------------------------------------------------------------------


def device_heartbeat(
    *,
    identity: DeviceIdentity,
    attributes: dict | None,
    agent_version: str | None,
    client_address: str = "",
) -> bool:
    """Store reported state when it differs from the last heartbeat's; True if written.

    A digest of the last stored state lives in the cache, so an unchanged
    heartbeat costs no database write (last_seen is kept by presence.device_mark_seen).
    A changed one is also where a new agent instance shows (see devices.identity).
    """
    reported: dict[str, Any] = {"attributes": attributes, "agent_version": agent_version}
    changes = {name: value for name, value in reported.items() if value is not None}
    if not changes:
        return False
    digest = sha256_hex(json.dumps(changes, sort_keys=True, default=str))
    digest_key = f"devstate:{identity.pk}"
    if cache.get(digest_key) == digest:
        return False
    instance_id = (attributes or {}).get(INSTANCE_ID_ATTRIBUTE)
    if instance_id:
        _instance_check(identity, instance_id, client_address)
    Device.objects.filter(pk=identity.pk).update(last_seen=timezone.now(), **changes)
    cache.set(digest_key, digest, timeout=settings.DEVICE_AUTH_CACHE_SECONDS)
    return True


def _instance_check(identity: DeviceIdentity, instance_id: str, client_address: str) -> None:
    conflict = instance_seen(device_pk=identity.pk, instance_id=instance_id, address=client_address)
    if conflict is None:
        return
    (this, other), (this_address, other_address) = conflict.instance_ids, conflict.addresses
    message = (
        f"Two agents are using this device's identity: instances {this} ({this_address or '?'}) "
        f"and {other} ({other_address or '?'}) take turns. Rotate the key and re-enroll the copy."
    )
    logger.warning("device %s: %s", identity.public_id, message)
    event_record(
        kind="device.identity_conflict",
        device=identity.pk,
        message=message[:500],
        instance_ids=list(conflict.instance_ids),
        addresses=list(conflict.addresses),
    )


def devices_mark_offline(*, now: datetime | None = None) -> list[str]:
    """Flip overdue devices to offline, each with an event. Returns their public ids."""
    now = now or timezone.now()
    flipped = []
    for pk, public_id, last_seen in (
        Device.objects.active().overdue(now).values_list("pk", "public_id", "last_seen")
    ):
        # Conditional on the last_seen we read: a check-in in between keeps it online.
        changed = Device.objects.filter(
            pk=pk, status=Device.Status.ONLINE, last_seen=last_seen
        ).update(status=Device.Status.OFFLINE)
        if changed:
            event_record(kind="device.offline", device=pk, last_seen=last_seen.isoformat())
            flipped.append(public_id)
    if flipped:
        logger.info("marked %d devices offline", len(flipped))
    return flipped
