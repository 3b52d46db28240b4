"""Telemetry storage.

Raw samples live in one narrow table (device, metric, ts, value) whose
composite primary key is also the index that answers "one device, one metric,
a time range". Metric names are stored once, in MetricName. Foreign keys of
the high-volume tables carry no database constraint and are never cascaded in
Python: devices are decommissioned, not deleted, and retention prunes the rows.
"""

from django.conf import settings
from django.db import models

from devices.models import Device


def _device_fk(**options: object) -> models.ForeignKey:
    return models.ForeignKey(
        Device,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # every table's primary key or unique index starts with device
        related_name="+",
        **options,
    )


class MetricName(models.Model):
    id = models.AutoField(primary_key=True)  # 4 bytes in every sample row
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def _metric_fk() -> models.ForeignKey:
    return models.ForeignKey(
        MetricName,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )


class Sample(models.Model):
    pk = models.CompositePrimaryKey("device_id", "metric_id", "ts")
    device = _device_fk()
    metric = _metric_fk()
    ts = models.DateTimeField()
    value = models.FloatField()

    # PostgreSQL also gets a BRIN index on ts for the retention prune (migration 0002).

    def __str__(self) -> str:
        return (
            f"{self.metric} of {self.device.public_id} at {self.ts:%Y-%m-%d %H:%M:%S}: {self.value}"
        )


class Rollup(models.Model):
    pk = models.CompositePrimaryKey("device_id", "metric_id", "bucket")
    device = _device_fk()
    metric = _metric_fk()
    bucket = models.DateTimeField()
    min = models.FloatField()
    max = models.FloatField()
    sum = models.FloatField()
    count = models.PositiveIntegerField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.metric} of {self.device.public_id} from {self.bucket:%Y-%m-%d %H:%M}"


class RollupMinute(Rollup):
    class Meta:
        # the retention prune and the "where did rollups stop" question
        indexes = [models.Index(fields=["bucket"], name="analytics_rollupminute_bucket")]


class RollupHour(Rollup):
    class Meta:
        indexes = [models.Index(fields=["bucket"], name="analytics_rolluphour_bucket")]


class LatestValue(models.Model):
    """The newest value of every metric of every device, kept current on ingest."""

    pk = models.CompositePrimaryKey("device_id", "metric_id")
    device = _device_fk()
    metric = _metric_fk()
    ts = models.DateTimeField()
    value = models.FloatField()

    def __str__(self) -> str:
        return f"{self.metric} of {self.device.public_id}: {self.value}"


class IngestBatch(models.Model):
    """Batch ids seen per device, so a retried upload is stored once."""

    device = _device_fk()
    batch_id = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sample_count = models.PositiveIntegerField()
    value_count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "batch_id"], name="ingestbatch_unique")
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id} of {self.device.public_id}"


class RollupBacklog(models.Model):
    """A time range of a device that received samples after it was rolled up."""

    device = _device_fk()
    start = models.DateTimeField()
    end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"rollups of {self.device.public_id} to redo from {self.start} to {self.end}"


class ThermalFrame(models.Model):
    """One MLX90640 frame: width x height temperatures in row-major order."""

    device = _device_fk()
    ts = models.DateTimeField()
    width = models.PositiveSmallIntegerField(default=32)
    height = models.PositiveSmallIntegerField(default=24)
    values = models.JSONField()
    min = models.FloatField()
    max = models.FloatField()
    mean = models.FloatField()

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [models.Index(fields=["device", "-ts"])]

    def __str__(self) -> str:
        return f"thermal frame of {self.device.public_id} at {self.ts:%Y-%m-%d %H:%M:%S}"


class RollupProgress(models.Model):
    """How far minute rollups have got: a catch-up resumes here, even across
    stretches without any samples."""

    name = models.CharField(max_length=32, primary_key=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} rollups until {self.until}"


# --- Alerting: rules, alerts, silences, notification channels and deliveries ---------


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class NotificationChannel(models.Model):
    """Where notifications go: a list of email addresses, or a webhook URL signed
    as the Standard Webhooks specification says."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    addresses = models.JSONField(default=list, blank=True)  # kind email
    url = models.URLField(max_length=500, blank=True)  # kind webhook
    # The webhook signing secret ("whsec_<base64>"), shown once at creation. The
    # server signs with it, so it is stored readable; the API and the admin never
    # show it again.
    secret = models.CharField(max_length=100, blank=True, editable=False)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class AlertRule(models.Model):
    """When to raise an alert for a device: a condition on the latest value of a
    metric, or one of the built-in device conditions."""

    class Source(models.TextChoices):
        METRIC = "metric", "a metric's latest value"
        DEVICE_OFFLINE = "device_offline", "device offline"
        SSH_FAILING = "ssh_failing", "SSH check failing"
        SSH_HOST_KEY_MISMATCH = "ssh_host_key_mismatch", "SSH host key mismatch"

    class Condition(models.TextChoices):
        GT = "gt", ">"
        GE = "ge", "≥"
        LT = "lt", "<"
        LE = "le", "≤"
        EQ = "eq", "="
        NE = "ne", "≠"
        ABSENT = "absent", "no value for for_seconds"

    name = models.CharField(max_length=200)
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.METRIC)
    # The built-in rules' key ("device_offline", ...): synced after migrate, editable.
    builtin = models.SlugField(max_length=32, null=True, blank=True, unique=True, editable=False)
    metric = models.CharField(max_length=100, blank=True)
    condition = models.CharField(max_length=8, choices=Condition.choices, default=Condition.GT)
    threshold = models.FloatField(null=True, blank=True)
    # The condition must hold this long before the alert fires.
    for_seconds = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    # Scope: empty means any.
    site = models.ForeignKey(
        "devices.Site", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    device_type = models.SlugField(max_length=32, blank=True)
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # No new alert for a device within this long after its last one resolved.
    cooldown_seconds = models.PositiveIntegerField(default=0)
    # A reminder while still firing (not acknowledged) every this long; 0: none.
    repeat_seconds = models.PositiveIntegerField(default=0)
    auto_resolve = models.BooleanField(default=True)
    # Hysteresis: a firing alert resolves only past this value (gt 80 with 75:
    # resolves below 75). Empty: when the condition no longer holds.
    resolve_threshold = models.FloatField(null=True, blank=True)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One rule firing for one device, from firing to resolved."""

    class State(models.TextChoices):
        FIRING = "firing"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    OPEN_STATES = (State.FIRING, State.ACKNOWLEDGED)

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="alerts")
    state = models.CharField(max_length=16, choices=State.choices, default=State.FIRING)
    severity = models.CharField(max_length=16, choices=Severity.choices)  # the rule's, at firing
    value = models.FloatField(null=True, blank=True)  # what fired it (none: absent, offline)
    last_value = models.FloatField(null=True, blank=True)  # the latest seen while open
    message = models.CharField(max_length=500, blank=True)
    fired_at = models.DateTimeField(db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ack_note = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Empty on a resolved alert: it resolved by itself.
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When it was last notified (fired or reminded): the next reminder counts from it.
    last_notified_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "device"],
                condition=models.Q(state__in=["firing", "acknowledged"]),
                name="one_open_alert_per_rule_and_device",
            )
        ]
        indexes = [
            models.Index(fields=["state", "severity"]),
            models.Index(fields=["device", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} on {self.device.public_id} ({self.state})"


class AlertPending(models.Model):
    """A rule's condition holds for a device since `since`, not yet for_seconds long."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "device"], name="one_pending_per_rule_and_device"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} pending on {self.device.public_id}"


class Silence(models.Model):
    """A maintenance window: alerts it covers still open, but notify no one."""

    site = models.ForeignKey(
        "devices.Site", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]

    def __str__(self) -> str:
        return f"silence {self.pk}: {self.reason[:40]}"


class NotificationDelivery(models.Model):
    """One notification to one channel, and every attempt to deliver it."""

    class Status(models.TextChoices):
        PENDING = "pending"  # not delivered yet; retried
        DELIVERED = "delivered"
        FAILED = "failed"  # given up (a 4xx, or the retries ran out)

    class EventType(models.TextChoices):
        FIRED = "alert.fired"
        REMINDER = "alert.reminder"
        RESOLVED = "alert.resolved"
        TEST = "test"

    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    # One delivery per channel and transition: the n-th reminder is its own.
    sequence = models.PositiveIntegerField(default=0)
    # The webhook-id header: the same on every attempt, so receivers can deduplicate.
    message_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()  # the body, fixed when queued (the signature covers it)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "alert", "event_type", "sequence"],
                name="one_delivery_per_channel_and_transition",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.channel.name} ({self.status})"
