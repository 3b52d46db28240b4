"""Writes to SSH targets and checks: the API and the admin call these.

A target is a Device (its telemetry, events and presence work like any other
device's) with SSH settings. Creating one creates the device; deleting one
removes the SSH settings and decommissions the device, so its history stays.
"""

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from paramiko import PKey

from devices.events import Actor, audit_record, event_record
from devices.models import Device, Site, SshCheck, SshTarget, SshTargetCheck
from devices.services import device_decommission
from devices.ssh.transport import host_key_fingerprint, host_key_parse, host_key_text
from homepot.errors import ConflictError, ServiceError

WET_BOARD = "wet_board"
INTERVAL_MIN_SECONDS = 5
INTERVAL_MAX_SECONDS = 86_400
# An RSA key of 16384 bits is under 3 KB in OpenSSH format; more is not a key.
HOST_KEY_MAX_CHARS = 8192
# The parsers an operator may give their own checks (the others read files of
# the built-in checks).
OPERATOR_PARSERS = [
    SshCheck.Parser.NUMBER,
    SshCheck.Parser.KEY_EQUALS,
    SshCheck.Parser.KEY_COLON,
    SshCheck.Parser.JSON,
]
CHECK_TIMEOUT_MAX_SECONDS = 300
# The start of every metric name a check writes (metric names are at most 100 chars).
metric_prefix_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}\Z",
    "Up to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or '_'.",
)
# One line, no control characters: what the operator sees is what runs.
check_command_validator = RegexValidator(
    r"^[^\x00-\x1f\x7f]+\Z", "One line without control characters."
)
# What changes how the server reaches the target: a new value deserves a fresh start.
CONNECTION_FIELDS = frozenset({"host", "port", "username", "host_key"})
# A target's own settings (the admin's form shows them in this order).
SETTINGS_FIELDS = [
    "host",
    "port",
    "username",
    "host_key",
    "via",
    "powered_by",
    "interval_seconds",
    "enabled",
]
# Everything a PATCH or the admin may change (the device id and site are fixed).
UPDATABLE_FIELDS = frozenset({*SETTINGS_FIELDS, "name", "checks"})
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


# --- Validation shared by the API's serializers and the admin's forms -------------------


def ssh_host_validate(value: str) -> None:
    """A host name (RFC 1123) or an IP address. Nothing is resolved here."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if (
        len(value) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
        # "999.1.1.1" is neither an address nor a name (a top label is never all digits).
        or labels[-1].isdigit()
    ):
        raise ValidationError("Enter a host name or an IP address.", code="invalid_host")


def host_key_normalise(text: str) -> str:
    """A pinned host key as stored: "<type> <base64>" (the comment dropped), or ""
    for none. Takes a public key file's line or a line of `ssh-keyscan` output.
    ValidationError naming the problem when it is not a public key."""
    text = text.strip()
    if not text:
        return ""
    if len(text) > HOST_KEY_MAX_CHARS:
        raise ValidationError(f"At most {HOST_KEY_MAX_CHARS} characters.", code="too_long")
    try:
        key = host_key_parse(text)
    except ValueError as exc:
        key = _keyscan_line_parse(text)
        if key is None:
            raise ValidationError(str(exc), code="invalid_host_key") from None
    return host_key_text(key)


def _keyscan_line_parse(text: str) -> PKey | None:
    """A line of `ssh-keyscan` output ("<host> <type> <base64>"), or None."""
    fields = text.split()
    if len(fields) != 3 or "\n" in text:
        return None
    try:
        return host_key_parse(" ".join(fields[1:]))
    except ValueError:
        return None


def fingerprint_of(host_key: str) -> str:
    """The SHA256 fingerprint of a stored key, "" for none (or one that no longer parses)."""
    if not host_key:
        return ""
    try:
        return host_key_fingerprint(host_key)
    except ValueError:
        return ""


def fingerprint_normalise(text: str) -> str:
    """What an operator types for a fingerprint: "SHA256:..." with or without the prefix."""
    text = text.strip()
    return text if text.startswith("SHA256:") else f"SHA256:{text}"


def powered_by_validate(*, site: Site, board: Device | None, powered_by: Device | None) -> None:
    """The device that powers a board is another active device of the board's site
    (a board and its bench supply sit together; the lab page shows them side by side)."""
    if powered_by is None:
        return
    if board is not None and powered_by.pk == board.pk:
        raise ServiceError("A board cannot power itself.", code="invalid_powered_by")
    if powered_by.site_id != site.pk:
        raise ServiceError(
            f"powered_by: {powered_by.public_id!r} is at another site than the board.",
            code="invalid_powered_by",
        )
    if powered_by.decommissioned_at is not None:
        raise ServiceError(
            f"powered_by: {powered_by.public_id!r} is decommissioned.", code="invalid_powered_by"
        )


# --- Targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckChoice:
    """A check a target is to run, with its own interval or the target's (None)."""

    check: SshCheck
    interval_seconds: int | None = None


def default_check_choices() -> list[CheckChoice]:
    """What a target runs when none are named: every built-in check."""
    return [CheckChoice(check) for check in SshCheck.objects.filter(builtin=True)]


def ssh_target_create(
    *,
    actor: Actor,
    public_id: str,
    name: str,
    site: Site,
    host: str,
    username: str,
    port: int = 22,
    host_key: str = "",
    via: str = "",
    powered_by: Device | None = None,
    checks: list[CheckChoice] | None = None,
    interval_seconds: int = 60,
    enabled: bool = True,
    device_type: str = WET_BOARD,
) -> SshTarget:
    """The device and its SSH target with its checks, in one transaction, audited.
    Inputs are validated by the caller (serializer or form) but for the device id's
    uniqueness (409) and the powering device's site."""
    powered_by_validate(site=site, board=None, powered_by=powered_by)
    checks = default_check_choices() if checks is None else checks
    with transaction.atomic():
        device = _device_create(public_id=public_id, name=name, site=site, device_type=device_type)
        target = SshTarget.objects.create(
            device=device,
            host=host,
            port=port,
            username=username,
            host_key=host_key,
            via=via,
            powered_by=powered_by,
            interval_seconds=interval_seconds,
            enabled=enabled,
        )
        _target_checks_set(target, checks)
        _checkin_interval_sync(target)
        audit_record(
            actor=actor,
            action="ssh_target.create",
            target=device,
            data={"site": site.public_id, **_audit_values(target, checks)},
        )
        event_record(kind="device.registered", device=device, via="ssh")
    return target


def _device_create(*, public_id: str, name: str, site: Site, device_type: str) -> Device:
    if Device.objects.filter(public_id=public_id).exists():
        raise ConflictError(f"Device {public_id!r} already exists.", code="device_exists")
    try:
        with transaction.atomic():
            return Device.objects.create(
                public_id=public_id, name=name, site=site, device_type=device_type
            )
    except IntegrityError:  # lost a race with an identical request
        raise ConflictError(f"Device {public_id!r} already exists.", code="device_exists") from None


def ssh_target_update(*, actor: Actor, target: SshTarget, changes: dict[str, Any]) -> SshTarget:
    """Apply the changes that differ from the stored target, audited with them.

    A new host, port, user name or host key starts afresh: the breaker closes, the
    offered key is forgotten and the checks are due at once. Enabling a target
    makes its checks due at once too.
    """
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    with transaction.atomic():
        target = (
            SshTarget.objects.select_related("device__site")
            .select_for_update(of=("self",))
            .get(pk=target.pk)
        )
        changed = _changed_fields(target, changes)
        if not changed:
            return target
        if "powered_by" in changed:
            powered_by_validate(
                site=target.device.site, board=target.device, powered_by=changes["powered_by"]
            )
        _fields_apply(target, changes, changed)
        audit_record(
            actor=actor,
            action="ssh_target.change",
            target=target.device,
            data={"changed": _audit_values(target, changes.get("checks"), only=changed)},
        )
    return target


def _changed_fields(target: SshTarget, changes: dict[str, Any]) -> set[str]:
    changed = {
        name
        for name, value in changes.items()
        if name not in ("name", "checks") and getattr(target, name) != value
    }
    if "name" in changes and changes["name"] != target.device.name:
        changed.add("name")
    if "checks" in changes and _checks_differ(target, changes["checks"]):
        changed.add("checks")
    return changed


def _checks_differ(target: SshTarget, checks: list[CheckChoice]) -> bool:
    stored = set(target.target_checks.values_list("ssh_check_id", "interval_seconds"))
    return stored != {(choice.check.pk, choice.interval_seconds) for choice in checks}


def _fields_apply(target: SshTarget, changes: dict[str, Any], changed: set[str]) -> None:
    now = timezone.now()
    if "name" in changed:
        target.device.name = changes["name"]
        target.device.save(update_fields=["name"])
    for name in changed - {"name", "checks"}:
        setattr(target, name, changes[name])
    due_now = bool(changed & CONNECTION_FIELDS) or ("enabled" in changed and target.enabled)
    if changed & CONNECTION_FIELDS:
        _fresh_start(target)
    target.save()
    if "checks" in changed:
        _target_checks_set(target, changes["checks"])
    if due_now:
        target.target_checks.update(next_run_at=now)
    elif changed & {"interval_seconds", "checks"}:
        _next_runs_bound(target, now)
    _checkin_interval_sync(target)


def _next_runs_bound(target: SshTarget, now: datetime) -> None:
    """A shorter interval takes effect at once: no check waits longer than its new
    interval from its last run (or from now, if it never ran)."""
    for row in target.target_checks.all():
        latest = (row.last_run_at or now) + timedelta(seconds=row.effective_interval_seconds)
        if row.next_run_at is not None and row.next_run_at > latest:
            row.next_run_at = max(latest, now)
            row.save(update_fields=["next_run_at"])


def _fresh_start(target: SshTarget) -> None:
    """Close the breaker and forget the offered key (a new address or key is a new start)."""
    target.consecutive_failures = 0
    target.circuit_opened_at = None
    target.offered_host_key = ""
    target.offered_host_key_at = None


def _target_checks_set(target: SshTarget, checks: list[CheckChoice]) -> None:
    """Make the target run exactly these checks. A check it already ran keeps its
    schedule and latest outcome; a new one is due at once."""
    wanted = {choice.check.pk: choice.interval_seconds for choice in checks}
    target.target_checks.exclude(ssh_check_id__in=wanted).delete()
    existing = {row.ssh_check_id: row for row in target.target_checks.all()}
    now = timezone.now()
    for check_pk, interval in wanted.items():
        row = existing.get(check_pk)
        if row is None:
            SshTargetCheck.objects.create(
                ssh_target=target, ssh_check_id=check_pk, interval_seconds=interval, next_run_at=now
            )
        elif row.interval_seconds != interval:
            row.interval_seconds = interval
            row.save(update_fields=["interval_seconds"])


def _checkin_interval_sync(target: SshTarget) -> None:
    """The device counts as checked in by its most frequent check: it goes offline
    (devices_mark_offline) when that one has not succeeded for its interval plus the grace."""
    intervals = [
        interval or target.interval_seconds
        for interval in target.target_checks.values_list("interval_seconds", flat=True)
    ]
    seconds = min(intervals, default=target.interval_seconds)
    Device.objects.filter(pk=target.device_id).update(checkin_interval=timedelta(seconds=seconds))


def _audit_values(
    target: SshTarget, checks: list[CheckChoice] | None, *, only: set[str] | None = None
) -> dict[str, Any]:
    """The target's settings as the audit trail keeps them: the host key by its
    fingerprint, devices by public id, checks by name."""
    values: dict[str, Any] = {
        "name": target.device.name,
        "host": target.host,
        "port": target.port,
        "username": target.username,
        "host_key": fingerprint_of(target.host_key),
        "via": target.via,
        "powered_by": target.powered_by.public_id if target.powered_by else None,
        "interval_seconds": target.interval_seconds,
        "enabled": target.enabled,
        "checks": [
            {"name": choice.check.name, "interval_seconds": choice.interval_seconds}
            for choice in checks or []
        ],
    }
    return values if only is None else {name: values[name] for name in sorted(only)}


def ssh_target_delete(*, actor: Actor, target: SshTarget) -> None:
    """Remove the SSH settings and decommission the device: its telemetry, events
    and audit trail stay, and its device id is not reused."""
    device = target.device
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="ssh_target.delete",
            target=device,
            data={"host": target.host, "port": target.port, "username": target.username},
        )
        target.delete()
        if device.decommissioned_at is None:
            device_decommission(device=device, actor=actor)


def ssh_target_host_key_accept(*, actor: Actor, target: SshTarget, fingerprint: str) -> SshTarget:
    """Pin the key the host last offered, if `fingerprint` is that key's: the
    operator confirms the key they saw, not whatever the host offers now."""
    with transaction.atomic():
        # Locked: a round that records another offered key waits for this to end.
        target = (
            SshTarget.objects.select_related("device")
            .select_for_update(of=("self",))
            .get(pk=target.pk)
        )
        offered = target.offered_host_key
        if not offered:
            raise ConflictError(
                "The host has offered no key to accept.", code="no_offered_host_key"
            )
        offered_fingerprint = fingerprint_of(offered)
        if fingerprint_normalise(fingerprint) != offered_fingerprint:
            raise ConflictError(
                f"The host offered {offered_fingerprint}, not {fingerprint.strip()!r}.",
                code="fingerprint_mismatch",
            )
        old_fingerprint = fingerprint_of(target.host_key)
        target.host_key = host_key_text(host_key_parse(offered))  # parsed: it has a fingerprint
        _fresh_start(target)
        target.save()
        target.target_checks.update(next_run_at=timezone.now())
        audit_record(
            actor=actor,
            action="ssh_target.accept_host_key",
            target=target.device,
            data={"old_fingerprint": old_fingerprint, "new_fingerprint": offered_fingerprint},
        )
        event_record(
            kind="ssh.host_key_accepted",
            device=target.device,
            message=f"Host key {offered_fingerprint} accepted by {actor}.",
            old_fingerprint=old_fingerprint,
            new_fingerprint=offered_fingerprint,
        )
    return target


# --- Checks -----------------------------------------------------------------------------


def ssh_check_create(
    *,
    actor: Actor,
    name: str,
    command: str,
    parser: str,
    metric_prefix: str,
    timeout_seconds: int = 10,
    description: str = "",
) -> SshCheck:
    """An operator-defined check (the built-in ones are defined in code)."""
    if parser not in OPERATOR_PARSERS:
        raise ServiceError(f"Parser {parser!r} is for built-in checks.", code="invalid_parser")
    if SshCheck.objects.filter(name=name).exists():
        raise ConflictError(f"SSH check {name!r} already exists.", code="ssh_check_exists")
    try:
        with transaction.atomic():
            check = SshCheck.objects.create(
                name=name,
                command=command,
                parser=parser,
                metric_prefix=metric_prefix,
                timeout_seconds=timeout_seconds,
                description=description,
            )
    except IntegrityError:
        raise ConflictError(
            f"SSH check {name!r} already exists.", code="ssh_check_exists"
        ) from None
    audit_record(
        actor=actor,
        action="ssh_check.create",
        target=check,
        data={"name": name, "command": command, "parser": parser, "metric_prefix": metric_prefix},
    )
    return check
