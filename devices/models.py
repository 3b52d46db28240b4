import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F

# Words the agent-facing API uses as path segments under /api/v1/devices/.
RESERVED_DEVICE_IDS = frozenset({"pending", "heartbeat", "sites"})
DEVICE_ID_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # use fullmatch
device_id_validator = RegexValidator(
    rf"^{DEVICE_ID_FORMAT.pattern}$",
    "Use 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.",
)


class Site(models.Model):
    # The id the API, URLs and agents know the site by ("site_id" on the wire).
    # The column keeps its old name: `site_id` in Python is the integer foreign
    # key of the models that point at a site.
    public_id = models.SlugField("site id", max_length=64, unique=True, db_column="site_id")
    name = models.CharField(max_length=200)
    location = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["public_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class DeviceQuerySet(models.QuerySet):
    def active(self) -> "DeviceQuerySet":
        return self.filter(decommissioned_at__isnull=True)

    def online(self) -> "DeviceQuerySet":
        return self.filter(status=Device.Status.ONLINE)

    def overdue(self, now: datetime) -> "DeviceQuerySet":
        """Online devices whose last check-in is older than their interval plus the grace."""
        grace = timedelta(seconds=settings.DEVICE_OFFLINE_GRACE_SECONDS)
        return self.online().filter(last_seen__lt=now - grace - F("checkin_interval"))


def default_checkin_interval() -> timedelta:
    return timedelta(seconds=settings.DEVICE_DEFAULT_CHECKIN_SECONDS)


class Device(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "never seen"
        ONLINE = "online"
        OFFLINE = "offline"
        DECOMMISSIONED = "decommissioned"

    # The id the API, headers and agents know the device by ("device_id" on the
    # wire). The column keeps its old name: `device_id` in Python is the integer
    # foreign key of the models that point at a device.
    public_id = models.CharField(
        "device id",
        max_length=64,
        unique=True,
        validators=[device_id_validator],
        db_column="device_id",
    )
    name = models.CharField(max_length=200)
    device_type = models.SlugField(max_length=32, db_index=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="devices")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    is_simulated = models.BooleanField(default=False)
    agent_version = models.CharField(max_length=32, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.NEW, db_index=True
    )
    last_seen = models.DateTimeField(null=True, blank=True)
    checkin_interval = models.DurationField(default=default_checkin_interval)
    # The latest state attributes the agent reported (heartbeat), size-limited.
    attributes = models.JSONField(default=dict, blank=True)
    # When the device last rotated its own key (it may, once per
    # DEVICE_KEY_SELF_ROTATION_MIN_SECONDS); claimed by a conditional UPDATE.
    key_self_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    decommissioned_at = models.DateTimeField(null=True, blank=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["public_id"]
        permissions = [
            ("rotate_key", "Can rotate a device's API key"),
            ("revoke_key", "Can revoke a device's API keys"),
            ("decommission", "Can decommission a device"),
        ]
        indexes = [models.Index(fields=["status", "last_seen"])]

    def __str__(self) -> str:
        # Reads the site: lists of devices select_related("site").
        return f"{self.public_id} ({self.site.name})"


class DeviceCredential(models.Model):
    """One API key of a device: its public id and the bcrypt hash of its secret."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="credentials")
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Updated when the key pays a full bcrypt check, so accurate to the auth cache period.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Set on agent-initiated rotation: the old key keeps working until then.
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"key {self.key_id} of {self.device.public_id}"

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class EnrollmentToken(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="enrollment_tokens")
    label = models.CharField(max_length=200, blank=True)
    # SHA-256 of the token: tokens are 32 random bytes, so a fast hash is enough
    # and lets the token be found by an indexed lookup.
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return f"enrollment token{label} for {self.site.public_id}"


class Event(models.Model):
    """Something that happened in the fleet: presence changes, command and alert transitions."""

    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    # The command the event is about (a string reference: devices does not
    # import commands). Pruning a command keeps its events until their own
    # retention ends.
    command = models.ForeignKey(
        "commands.Command",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
    )
    kind = models.CharField(max_length=64, db_index=True)
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["device", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.device.public_id}" if self.device_id else self.kind


class AuditEntry(models.Model):
    """Who did what: every enrollment, key change, decommission and command action."""

    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL)
    # A readable name of the actor that survives deletion of the user or device.
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type} {self.target_id}"
