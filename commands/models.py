import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from devices.models import Device


class Status(models.TextChoices):
    QUEUED = "queued"
    DELIVERED = "delivered"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    CANCELED = "canceled"


TERMINAL = frozenset(
    {
        Status.SUCCEEDED,
        Status.FAILED,
        Status.REJECTED,
        Status.TIMED_OUT,
        Status.EXPIRED,
        Status.CANCELED,
    }
)


class CommandGroup(models.Model):
    """One bulk request: the same command queued for many devices."""

    # The id the API knows the group by ("group_id" on the wire). The column keeps
    # its old name: `group_id` in Python is Command's integer foreign key.
    public_id = models.UUIDField(
        "group id", default=uuid.uuid4, unique=True, editable=False, db_column="group_id"
    )
    command_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    # What the operator asked for: device ids, or a site and optional device type.
    target = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # NULL, not "", when absent: the unique constraint only covers given keys.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # SHA-256 of what the keyed request asked for: a reused key must ask the same.
    request_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="commandgroup_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.command_type} on {self._target_text()}"

    def _target_text(self) -> str:
        """The target as the operator named it: devices, or a site (and a type)."""
        public_ids = self.target.get("device_ids")
        if public_ids is not None:
            return f"{len(public_ids)} device{'s' if len(public_ids) != 1 else ''}"
        kind = f" ({self.target['device_type']})" if self.target.get("device_type") else ""
        return f"site {self.target.get('site', '?')}{kind}"


class CommandQuerySet(models.QuerySet):
    def queued_for(self, device_pk: int) -> "CommandQuerySet":
        return self.filter(device_id=device_pk, status=Status.QUEUED)

    def active(self) -> "CommandQuerySet":
        return self.exclude(status__in=TERMINAL)


class Command(models.Model):
    # The id the API and agents know the command by ("command_id" on the wire).
    # The column keeps its old name: `command_id` in Python is Event's integer
    # foreign key.
    public_id = models.UUIDField(
        "command id", default=uuid.uuid4, unique=True, editable=False, db_column="command_id"
    )
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    group = models.ForeignKey(
        CommandGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="commands"
    )
    command_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # NULL, not "", when absent: the unique constraint only covers given keys.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # SHA-256 of what the keyed request asked for (device included): a reused
    # key must ask the same.
    request_digest = models.CharField(max_length=64, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the agent says it ran the command (its own clock).
    executed_at = models.DateTimeField(null=True, blank=True)

    expires_at = models.DateTimeField(null=True, blank=True)
    ack_deadline = models.DateTimeField(null=True, blank=True)
    timeout_seconds = models.PositiveIntegerField()
    deadline = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)

    result = models.JSONField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)

    objects = CommandQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # delivery: a device's queued commands, oldest first
            models.Index(fields=["device", "status", "created_at"]),
            # the beat sweeps: queued past expiry, delivered past ack, running past deadline
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["status", "ack_deadline"]),
            models.Index(fields=["status", "deadline"]),
            # retention: finished commands past COMMAND_RETENTION_DAYS
            models.Index(fields=["finished_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="command_idempotency_key_unique",
            )
        ]
        permissions = [("cancel_command", "Can cancel a command")]

    def __str__(self) -> str:
        # Reads the device: lists of commands select_related("device").
        return f"{self.command_type} on {self.device.public_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL
