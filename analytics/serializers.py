from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import empty

from analytics.fields import (
    METRIC_NAME_PATTERN,
    MetricsField,
    SamplesField,
    StrictFloatField,
    TimestampField,
    finite_number,
    parse_timestamp,
)
from homepot.api import StrictSerializer
from homepot.validators import BoundedDateTimeField

# HOMEPOT's flat payload: each of these is stored as a metric of the same name.
FLAT_METRICS = [
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "network_latency_ms",
    "transaction_count",
    "transaction_volume",
    "error_rate",
    "active_connections",
    "collection_interval_seconds",
]


class FlatMetricsSerializer(StrictSerializer):
    """The flat object HOMEPOT's existing agents send.

    Every push of every agent comes through here, so an ordinary payload is
    checked in one plain pass (flat_metrics_checked) instead of field by field;
    anything else is validated, and refused, by the fields below as before."""

    # Optional; if sent, it must be the authenticated device's public id.
    device_id = serializers.CharField(required=False, max_length=64, source="public_id")
    timestamp = TimestampField(required=False, help_text="When measured; default: now.")
    cpu_percent = StrictFloatField(required=False)
    memory_percent = StrictFloatField(required=False)
    disk_percent = StrictFloatField(required=False)
    network_latency_ms = StrictFloatField(required=False, allow_null=True)
    transaction_count = StrictFloatField(required=False)
    transaction_volume = StrictFloatField(required=False)
    error_rate = StrictFloatField(required=False)
    active_connections = StrictFloatField(required=False)
    collection_interval_seconds = StrictFloatField(required=False)
    extra_metrics = MetricsField(required=False)

    def run_validation(self, data: Any = empty) -> Any:
        checked = flat_metrics_checked(data)
        return checked if checked is not None else super().run_validation(data)


FLAT_FIELDS = frozenset({"device_id", "timestamp", "extra_metrics", *FLAT_METRICS})
FLAT_NULLABLE = frozenset({"network_latency_ms"})  # null: not measured this time
_EXTRA_METRICS = MetricsField()


def flat_metrics_checked(data: Any) -> dict[str, Any] | None:
    """What FlatMetricsSerializer's fields return for a payload they accept, in
    one pass, or None when the payload needs them: anything unusual (a device id
    with spaces or control characters, a number given as a string) or wrong.
    None is never an answer, only "ask the fields", so the accepted payloads,
    the values stored and the error messages stay exactly theirs."""
    if type(data) is not dict or not data.keys() <= FLAT_FIELDS:
        return None
    checked: dict[str, Any] = {}
    try:
        if "device_id" in data:
            checked["public_id"] = _plain_device_id(data["device_id"])
        if "timestamp" in data:
            checked["timestamp"] = parse_timestamp(data["timestamp"], timezone.now())
        bound = settings.TELEMETRY_MAX_ABS_VALUE
        for name in FLAT_METRICS:
            if name in data:
                value = data[name]
                nullable = value is None and name in FLAT_NULLABLE
                checked[name] = None if nullable else finite_number(value, bound)
        if "extra_metrics" in data:
            checked["extra_metrics"] = _EXTRA_METRICS.to_internal_value(data["extra_metrics"])
    except serializers.ValidationError:
        return None
    return checked


def _plain_device_id(value: Any) -> str:
    """A device id the CharField would take unchanged (its trimming, length
    and character checks are no-ops for it)."""
    if type(value) is str and 0 < len(value) <= 64 and value.isprintable():
        if value.strip() == value:
            return value
    raise serializers.ValidationError("Needs the field's own checks.")


class BatchSerializer(StrictSerializer):
    """A batch of timestamped samples; the batch id makes a retried upload land once."""

    device_id = serializers.CharField(required=False, max_length=64, source="public_id")
    batch_id = serializers.RegexField(r"^[A-Za-z0-9._:-]{1,64}$")
    samples = SamplesField(help_text="[{ts: ISO 8601 or Unix seconds, metrics: {name: number}}]")


class IngestResultSerializer(serializers.Serializer):
    batch_id = serializers.CharField(allow_null=True)
    samples = serializers.IntegerField()
    values = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class SeriesQuerySerializer(serializers.Serializer):
    # Matched whole and untrimmed, as at ingest: "cpu\n" is no metric name.
    name = serializers.RegexField(rf"\A{METRIC_NAME_PATTERN}\Z", trim_whitespace=False)
    # Not TimestampField: a query may reach back past raw retention (rollups
    # are kept longer) and forward past now.
    start = BoundedDateTimeField(required=False)
    end = BoundedDateTimeField(required=False)
    step = serializers.IntegerField(min_value=1, max_value=86400 * 7, default=60)
    agg = serializers.ChoiceField(choices=["avg", "min", "max", "sum", "count"], default="avg")

    def validate(self, attrs: dict) -> dict:
        if "start" in attrs and "end" in attrs and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "Must be after start."})
        return attrs


class PointSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    value = serializers.FloatField(allow_null=True, help_text="null where no JSON number fits")


class SeriesSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    name = serializers.CharField()
    agg = serializers.CharField()
    step = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    source = serializers.CharField(help_text="raw, minute or hour: where the points came from")
    resolution = serializers.ChoiceField(
        choices=["raw", "1m", "1h"],
        help_text="The finest data the points were computed from. A range that starts "
        "before raw retention (or minute-rollup retention) is answered from coarser "
        "rollups, and `step` is then raised to a whole multiple of their resolution.",
    )
    points = PointSerializer(many=True)


class MetricNamePageSerializer(serializers.Serializer):
    """A page of metric names, shaped like every other paginated list."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = serializers.ListField(child=serializers.CharField())


class LatestValueSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="null where no JSON number fits")
    ts = serializers.DateTimeField()


class LatestMetricsSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    metrics = serializers.DictField(child=LatestValueSerializer())


class ThermalFrameInputSerializer(StrictSerializer):
    ts = TimestampField(required=False)
    width = serializers.IntegerField(default=32, min_value=1, max_value=64)
    height = serializers.IntegerField(default=24, min_value=1, max_value=64)
    values = serializers.ListField(child=StrictFloatField(), max_length=64 * 64)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        expected = attrs["width"] * attrs["height"]
        got = len(attrs["values"])
        if got != expected:
            message = f"Expected {expected} values (width x height), got {got}."
            raise serializers.ValidationError({"values": message})
        return attrs


class ThermalFrameSerializer(serializers.Serializer):
    device_id = serializers.CharField(source="device.public_id")
    ts = serializers.DateTimeField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    min = serializers.FloatField()
    max = serializers.FloatField()
    mean = serializers.FloatField()
    values = serializers.ListField(child=serializers.FloatField())
