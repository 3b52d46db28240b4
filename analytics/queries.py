"""Reading telemetry: series over a range at a step, latest values, names.

A series is answered from the coarsest source whose resolution divides the
step (hour rollups, minute rollups, raw samples). Rollups trail real time, so
the part of the range after the last rolled-up bucket is answered from the
next finer source: the newest points are never missing.

Each source is kept for its own retention (raw samples the shortest, hour
rollups years). A range starting before a source's horizon is answered from
the next coarser source that still reaches back to its start, with the step
raised to a whole multiple of that source's resolution; the answer names the
resolution and the step it used.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import QuerySet

from analytics.models import LatestValue, MetricName, RollupHour, RollupMinute, Sample
from homepot.errors import NotFoundError, ServiceError

# (bucket or ts, min, max, sum, count)
Row = tuple[datetime, float, float, float, int]
# Coarsest first: (source, model, resolution in seconds).
SOURCES = [("hour", RollupHour, 3600), ("minute", RollupMinute, 60), ("raw", Sample, 1)]
# The resolution each source answers at, as the API names it.
RESOLUTIONS = {"hour": "1h", "minute": "1m", "raw": "raw"}
RETENTION_SETTINGS = {
    "hour": "TELEMETRY_HOUR_RETENTION_DAYS",
    "minute": "TELEMETRY_MINUTE_RETENTION_DAYS",
    "raw": "TELEMETRY_RAW_RETENTION_DAYS",
}


@dataclass
class Series:
    name: str
    agg: str
    step: int
    start: datetime
    end: datetime
    source: str
    resolution: str
    points: list[dict] = field(default_factory=list)


def _raw_rows(device_pk: int, metric_pk: int, start: datetime, end: datetime) -> Iterator[Row]:
    rows = Sample.objects.filter(
        device_id=device_pk, metric_id=metric_pk, ts__gte=start, ts__lt=end
    ).values_list("ts", "value")
    for ts, value in rows.iterator(chunk_size=5000):
        yield ts, value, value, value, 1


def _rows(
    level: int, device_pk: int, metric_pk: int, start: datetime, end: datetime
) -> Iterator[Row]:
    """Rows of SOURCES[level], then the tail its rollups do not cover yet from finer levels."""
    name, model, _ = SOURCES[level]
    if name == "raw":
        yield from _raw_rows(device_pk, metric_pk, start, end)
        return
    rollups = model.objects.filter(device_id=device_pk, metric_id=metric_pk)
    covered = rollups.filter(bucket__gte=start, bucket__lt=end)
    yield from covered.order_by("bucket").values_list("bucket", "min", "max", "sum", "count")
    last = (
        rollups.filter(bucket__lt=end).order_by("-bucket").values_list("bucket", flat=True).first()
    )
    resolution = SOURCES[level][2]
    tail_start = start if last is None or last < start else _after(last, resolution)
    if tail_start < end:
        yield from _rows(level + 1, device_pk, metric_pk, tail_start, end)


def _after(bucket: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(bucket.timestamp() + seconds, tz=UTC)


def _aggregate(rows: Iterator[Row], step: int, agg: str) -> list[dict]:
    buckets: dict[int, list[float]] = {}
    for ts, lo, hi, total, count in rows:
        key = int(ts.timestamp()) // step * step
        acc = buckets.get(key)
        if acc is None:
            buckets[key] = [lo, hi, total, count]
        else:
            acc[0], acc[1] = min(acc[0], lo), max(acc[1], hi)
            acc[2] += total
            acc[3] += count
    pick = {
        "min": lambda a: a[0],
        "max": lambda a: a[1],
        "sum": lambda a: a[2],
        "count": lambda a: a[3],
        "avg": lambda a: a[2] / a[3],
    }[agg]
    return [
        {"ts": datetime.fromtimestamp(key, tz=UTC), "value": json_number(pick(acc))}
        for key, acc in sorted(buckets.items())
    ]


def json_number(value: float | None) -> float | None:
    """The value, or None where JSON has no number for it (Infinity, NaN).

    Ingest refuses such values, but rows written before the bound (or sums
    of huge ones) may still hold them; a read must answer, not fail."""
    if value is None or math.isfinite(value):
        return value
    return None


def _horizon(level: int, now: datetime) -> datetime:
    days = getattr(settings, RETENTION_SETTINGS[SOURCES[level][0]])
    return datetime.fromtimestamp(now.timestamp() - days * 86400, tz=UTC)


def _source_level(step: int, start: datetime, now: datetime) -> int:
    """Index into SOURCES: the coarsest source whose resolution divides the step,
    or a coarser one if the range starts before that source's horizon."""
    level = next(i for i, (_, _, resolution) in enumerate(SOURCES) if step % resolution == 0)
    while level > 0 and start < _horizon(level, now):
        level -= 1
    return level


def metric_series(
    *,
    device_pk: int,
    name: str,
    start: datetime,
    end: datetime,
    step: int,
    agg: str,
    now: datetime | None = None,
) -> Series:
    metric_pk = MetricName.objects.filter(name=name).values_list("pk", flat=True).first()
    if metric_pk is None:
        raise NotFoundError(f"No metric named {name!r}.")
    if (end.timestamp() - start.timestamp()) / step > settings.TELEMETRY_QUERY_MAX_POINTS:
        raise ServiceError(
            f"More than {settings.TELEMETRY_QUERY_MAX_POINTS} points: use a larger step.",
            code="too_many_points",
        )
    level = _source_level(step, start, now or datetime.now(tz=UTC))
    source, _, resolution = SOURCES[level]
    step = -(-step // resolution) * resolution  # a whole number of source buckets
    # Align to the step so every bucket is whole.
    start = datetime.fromtimestamp(int(start.timestamp()) // step * step, tz=UTC)
    points = _aggregate(_rows(level, device_pk, metric_pk, start, end), step, agg)
    return Series(name, agg, step, start, end, source, RESOLUTIONS[source], points)


def latest_values(device_pk: int) -> dict[str, dict]:
    rows = LatestValue.objects.filter(device_id=device_pk).values_list(
        "metric__name", "value", "ts"
    )
    return {
        name: {"value": json_number(value), "ts": ts}
        for name, value, ts in rows.order_by("metric__name")
    }


def metric_names(device_pk: int | None = None) -> QuerySet:
    """Names, sorted: a lazy query, so a page of it reads only that page."""
    if device_pk is None:
        return MetricName.objects.order_by("name").values_list("name", flat=True)
    return (
        LatestValue.objects.filter(device_id=device_pk)
        .order_by("metric__name")
        .values_list("metric__name", flat=True)
    )
