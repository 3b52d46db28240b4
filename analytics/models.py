"""Telemetry storage.

Raw samples live in one narrow table (device, metric, ts, value) whose
composite primary key is also the index that answers "one device, one metric,
a time range". Metric names are stored once, in MetricName. Foreign keys of
the high-volume tables carry no database constraint and are never cascaded in
Python: devices are decommissioned, not deleted, and retention prunes the rows.
"""

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
