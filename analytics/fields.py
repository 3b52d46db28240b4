"""Fast, strict validation of telemetry values.

A batch carries up to tens of thousands of values, so these fields validate
whole structures in plain loops instead of one DRF field per value. Errors
still name the exact place: {"samples": {"3": {"metrics": {"cpu": [...]}}}}.
"""

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from homepot.validators import validate_datetime_bounds

# Used with fullmatch: "$" alone would let a trailing newline through ("cpu\n").
METRIC_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}"
METRIC_NAME_RE = re.compile(METRIC_NAME_PATTERN)
TIMESTAMP_SCHEMA = {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}
METRICS_SCHEMA = {"type": "object", "additionalProperties": {"type": "number"}}
METRIC_NAME_HELP = (
    "1-100 characters: letters, digits, '_', '.', ':', '-'; not starting with a digit."
)


def finite_number(value: Any, bound: float | None = None) -> float:
    """A finite JSON number within +-bound (TELEMETRY_MAX_ABS_VALUE by default).

    The bound keeps every rollup SUM far from overflowing a double."""
    # bool is an int in Python, but true is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise serializers.ValidationError("Must be a number.")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a double
        number = math.inf
    if not math.isfinite(number):
        raise serializers.ValidationError("Must be a finite number.")
    if bound is None:
        bound = settings.TELEMETRY_MAX_ABS_VALUE
    if abs(number) > bound:
        raise serializers.ValidationError(
            f"Must be between -{bound:g} and {bound:g}.", code="out_of_range"
        )
    return number


@extend_schema_field({"type": "number"})
class StrictFloatField(serializers.Field):
    """A JSON number, finite; strings and booleans are refused (DRF's FloatField coerces them)."""

    def to_internal_value(self, data: Any) -> float:
        return finite_number(data)

    def to_representation(self, value: float) -> float:
        return value


@extend_schema_field(METRICS_SCHEMA)
class MetricsField(serializers.Field):
    """{name: finite number}, names checked against METRIC_NAME_RE."""

    def to_internal_value(self, data: Any) -> dict[str, float]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object of {name: number}.")
        if len(data) > settings.TELEMETRY_MAX_METRICS_PER_SAMPLE:
            raise serializers.ValidationError(
                f"At most {settings.TELEMETRY_MAX_METRICS_PER_SAMPLE} metrics per sample."
            )
        metrics, errors = {}, {}
        bound = settings.TELEMETRY_MAX_ABS_VALUE
        for name, value in data.items():
            if not METRIC_NAME_RE.fullmatch(name):
                errors[name] = [f"Invalid metric name: {METRIC_NAME_HELP}"]
                continue
            try:
                metrics[name] = finite_number(value, bound)
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return metrics

    def to_representation(self, value: dict) -> dict:
        return value


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """An ISO 8601 string or Unix seconds, inside the accepted window."""
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise serializers.ValidationError("Not an ISO 8601 timestamp.") from None
        if timezone.is_naive(ts):
            raise serializers.ValidationError("Give a time zone (for example Z).")
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            ts = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise serializers.ValidationError("Out of range.") from None
    else:
        raise serializers.ValidationError("Must be an ISO 8601 string or Unix seconds.")
    validate_datetime_bounds(ts)
    if ts > now + timedelta(seconds=settings.TELEMETRY_MAX_FUTURE_SKEW_SECONDS):
        raise serializers.ValidationError("In the future (check the device clock).")
    if ts < now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS):
        raise serializers.ValidationError(
            f"Older than the {settings.TELEMETRY_RAW_RETENTION_DAYS}-day raw retention."
        )
    return ts


@extend_schema_field(TIMESTAMP_SCHEMA)
class TimestampField(serializers.Field):
    def to_internal_value(self, data: Any) -> datetime:
        return parse_timestamp(data, timezone.now())

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"ts": TIMESTAMP_SCHEMA, "metrics": METRICS_SCHEMA},
            "required": ["ts", "metrics"],
        },
    }
)
class SamplesField(serializers.Field):
    """[{ts, metrics: {name: number}}, ...] -> [(ts, {name: value}), ...]"""

    def to_internal_value(self, data: Any) -> list[tuple[datetime, dict[str, float]]]:
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError("Must be a non-empty list of samples.")
        if len(data) > settings.TELEMETRY_MAX_SAMPLES_PER_BATCH:
            raise serializers.ValidationError(
                f"At most {settings.TELEMETRY_MAX_SAMPLES_PER_BATCH} samples per batch."
            )
        now, metrics_field = timezone.now(), MetricsField()
        samples, errors = [], {}
        for index, sample in enumerate(data):
            if not isinstance(sample, dict):
                errors[str(index)] = ["Must be an object {ts, metrics}."]
                continue
            sample_errors = {}
            unknown = set(sample) - {"ts", "metrics"}
            for name in sorted(unknown):
                sample_errors[name] = ["Unknown field."]
            try:
                ts = parse_timestamp(sample.get("ts"), now)
            except serializers.ValidationError as exc:
                sample_errors["ts"] = exc.detail
            try:
                metrics = metrics_field.to_internal_value(sample.get("metrics"))
            except serializers.ValidationError as exc:
                sample_errors["metrics"] = exc.detail
            if sample_errors:
                errors[str(index)] = sample_errors
            else:
                samples.append((ts, metrics))
        if errors:
            raise serializers.ValidationError(errors)
        return samples

    def to_representation(self, value: list) -> list:
        return value
