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
    """One API key of a device: its public id and the keyed hash of its secret (devices/keys.py)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="credentials")
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Updated when the key is checked against its stored hash, so accurate to the auth cache period.
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


class TransactionId(models.Func):
    """The id of the transaction writing the row: PostgreSQL's 64-bit one (it never
    wraps). SQLite has none and needs none: one writer at a time commits its ids
    in order. What the event feed orders by (devices/feed.py says why)."""

    template = "0"
    output_field = models.BigIntegerField()

    def as_postgresql(self, compiler: object, connection: object, **extra: object) -> tuple:
        return "(pg_current_xact_id()::text::bigint)", []


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
    # The alert the event is about (a string reference, as for commands).
    alert = models.ForeignKey(
        "analytics.Alert",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
    )
    kind = models.CharField(max_length=64, db_index=True)
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The writing transaction (set by the database): the feed serves events in
    # (txid, id) order, and only those of transactions that have ended.
    txid = models.BigIntegerField(db_default=TransactionId(), editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["device", "-created_at"]),
            models.Index(fields=["txid", "id"], name="event_feed_order"),
        ]

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


# --- Agentless targets: checked over SSH by the server ------------------------------

ssh_username_validator = RegexValidator(
    r"^[a-z_][a-z0-9_.-]{0,31}$", "Use a POSIX user name: 1-32 of a-z, 0-9, '_', '.', '-'."
)


class SshCheck(models.Model):
    """A named check: one fixed command line run on a target, and the parser that
    turns its output into metrics. The built-in checks are defined in code
    (devices/ssh/checks.py) and synced after every migrate; operators add their own."""

    class Parser(models.TextChoices):
        # The built-in checks' parsers.
        UPTIME = "uptime", "/proc/uptime"
        LOADAVG = "loadavg", "/proc/loadavg"
        HWMON = "hwmon", "hwmon temperatures"
        MEMINFO = "meminfo", "/proc/meminfo"
        # For operator-defined checks.
        NUMBER = "number", "a single number"
        KEY_EQUALS = "key_equals", "key=value lines"
        KEY_COLON = "key_colon", "key: value lines"
        JSON = "json", "a JSON object of numbers"

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    # Run as given on the target (by the login shell of the target's user there).
    command = models.CharField(max_length=1000)
    parser = models.CharField(max_length=16, choices=Parser.choices)
    # Metric names start with this: "wet" gives wet.uptime, wet.temp.<sensor>...
    metric_prefix = models.CharField(max_length=64, default="wet")
    timeout_seconds = models.PositiveIntegerField(default=10)
    builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "SSH check"

    def __str__(self) -> str:
        return self.name


class SshTarget(models.Model):
    """How the server reaches an agentless device (a WET board) over SSH.

    No secret lives here: the server logs in with its own key
    (HOMEPOT_SSH_KEY_FILE) and trusts only the pinned host key.
    """

    class LastStatus(models.TextChoices):
        NEVER = "", "never checked"
        OK = "ok"
        FAILED = "failed"
        HOST_KEY_MISMATCH = "host_key_mismatch", "host key mismatch"
        CIRCUIT_OPEN = "circuit_open", "circuit open"

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="ssh_target")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=22)
    username = models.CharField(max_length=32, validators=[ssh_username_validator])
    # The pinned host key, OpenSSH public-key format ("ssh-ed25519 AAAA..."); empty
    # until an operator pins or accepts one: until then every check fails.
    host_key = models.TextField(blank=True)
    # A note for people (a jump host, a console server); not used to connect.
    via = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    # How often its checks run, unless a check of the target sets its own interval.
    interval_seconds = models.PositiveIntegerField(default=60)
    # The lab monitor that powers the board: its page shows the board beside the PSU.
    powered_by = models.ForeignKey(
        Device,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="powered_ssh_targets",
    )
    checks = models.ManyToManyField(SshCheck, through="SshTargetCheck", related_name="targets")

    # The outcome of the latest round of checks.
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(
        max_length=24, choices=LastStatus.choices, default=LastStatus.NEVER, blank=True
    )
    last_error = models.CharField(max_length=500, blank=True)
    # Rounds that failed in a row; the circuit opens at SSH_BREAKER_THRESHOLD.
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Set when the circuit opened; it is half-open SSH_BREAKER_COOLDOWN_SECONDS later.
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    # The key the host offered when it was not the pinned one, for an operator to accept.
    offered_host_key = models.TextField(blank=True)
    offered_host_key_at = models.DateTimeField(null=True, blank=True)
    # A round of checks runs until then (claimed by a conditional UPDATE).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["device__public_id"]
        verbose_name = "SSH target"

    def __str__(self) -> str:
        return f"{self.device.public_id} via ssh {self.username}@{self.host}:{self.port}"


class SshTargetCheck(models.Model):
    """A check a target runs, with its own schedule and latest outcome."""

    ssh_target = models.ForeignKey(
        SshTarget, on_delete=models.CASCADE, related_name="target_checks"
    )
    ssh_check = models.ForeignKey(SshCheck, on_delete=models.CASCADE, related_name="target_checks")
    # Overrides the target's interval_seconds for this check.
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, blank=True)  # "ok", "failed" or ""
    last_error = models.CharField(max_length=500, blank=True)
    last_metric_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["ssh_target", "ssh_check__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["ssh_target", "ssh_check"], name="ssh_target_check_once"
            )
        ]
        verbose_name = "check of a target"

    def __str__(self) -> str:
        return f"{self.ssh_check.name} on {self.ssh_target.device.public_id}"

    @property
    def effective_interval_seconds(self) -> int:
        return self.interval_seconds or self.ssh_target.interval_seconds
