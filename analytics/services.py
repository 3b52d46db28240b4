"""Telemetry ingest, rollups, retention and thermal frames."""

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, FloatField, Max, Min, QuerySet, Sum, Value
from django.db.models.functions import Greatest, Least, TruncHour, TruncMinute
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from analytics import partitions
from analytics.fields import MetricsField
from analytics.models import (
    IngestBatch,
    LatestValue,
    MetricName,
    RollupBacklog,
    RollupHour,
    RollupMinute,
    RollupProgress,
    Sample,
    ThermalFrame,
)
from devices.auth import DeviceIdentity
from devices.models import Device
from homepot.errors import ServiceError
from homepot.metrics import ingest_counted

logger = logging.getLogger(__name__)

Samples = Sequence[tuple[datetime, dict[str, float]]]
# Rows per INSERT statement: 4 parameters each, under SQLite's 32766 limit.
ROWS_PER_STATEMENT = 2000

# Metric names never change ids, so each process remembers the ones it has seen.
_metric_ids: dict[str, int] = {}


def metric_ids_for(names: Iterable[str]) -> dict[str, int]:
    names = set(names)
    missing = names - _metric_ids.keys()
    if missing:
        MetricName.objects.bulk_create(
            [MetricName(name=name) for name in sorted(missing)], ignore_conflicts=True
        )
        _metric_ids.update(MetricName.objects.filter(name__in=missing).values_list("name", "id"))
    return {name: _metric_ids[name] for name in names}


def metric_id_cache_clear() -> None:
    _metric_ids.clear()
    _device_names.clear()


# The metric names each device is known to have (its LatestValue rows), so the
# per-device limit costs nothing while a device keeps sending the same names.
_device_names: dict[int, frozenset[str]] = {}
# Remembered for at most this many devices; then forgotten and re-read as needed.
DEVICE_NAMES_REMEMBERED = 20_000


class TooManyMetricNames(ServiceError):
    code = "too_many_metric_names"


def _known_names(device_pk: int) -> frozenset[str]:
    rows = LatestValue.objects.filter(device_id=device_pk).values_list("metric__name", flat=True)
    return frozenset(rows)


def _check_metric_name_limit(device_pk: int, names: set[str]) -> None:
    """Refuse a batch that would give the device more distinct metric names
    than TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE, before any name is created.

    Concurrent batches of one device may overshoot the limit by what they add
    together; the limit bounds growth, it is not an exact quota."""
    known = _device_names.get(device_pk)
    if known is not None and names <= known:
        return
    known = _known_names(device_pk)
    limit = settings.TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE
    new = names - known
    if len(known) + len(new) > limit:
        raise TooManyMetricNames(
            f"A device may have at most {limit} distinct metric names; it has {len(known)}"
            f" and this request adds {len(new)}.",
        )
    if len(_device_names) >= DEVICE_NAMES_REMEMBERED:
        _device_names.clear()
    # Only names already stored: the new ones are added once this batch commits.
    _device_names[device_pk] = known


def _remember_names(device_pk: int, names: set[str]) -> None:
    known = _device_names.get(device_pk)
    if known is not None and not names <= known:
        _device_names[device_pk] = known | names


@dataclass(frozen=True)
class IngestResult:
    batch_id: str | None
    samples: int
    values: int
    duplicate: bool = False


def _insert_many(sql_head: str, sql_tail: str, rows: list[tuple]) -> None:
    """INSERT many rows with multi-row VALUES statements (fewer round trips
    than executemany on both PostgreSQL and SQLite)."""
    with connection.cursor() as cursor:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            cursor.execute(
                f"{sql_head} VALUES {_placeholders(len(chunk))} {sql_tail}",
                [v for row in chunk for v in row],
            )


def _placeholders(rows: int) -> str:
    return ", ".join(["(%s, %s, %s, %s)"] * rows)


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _record_batch(device_pk: int, batch_id: str, samples: int, values: int) -> bool:
    """True if the batch id is new for the device (and is now recorded)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(IngestBatch)}"
            " (device_id, batch_id, received_at, sample_count, value_count)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id, batch_id) DO NOTHING",
            [device_pk, batch_id, _db_time(timezone.now()), samples, values],
        )
        return cursor.rowcount == 1


def _db_time(value: datetime) -> object:
    return connection.ops.adapt_datetimefield_value(value)


def telemetry_ingest(
    *, identity: DeviceIdentity, samples: Samples, batch_id: str | None = None
) -> IngestResult:
    """Store samples in one transaction: raw rows, the latest value of each
    metric, and a note for the rollups when samples arrive late."""
    return _samples_store(device_pk=identity.pk, samples=samples, batch_id=batch_id)


class CheckMetricsRefused(ServiceError):
    code = "metrics_refused"


def check_metrics_store(device: Device, at: datetime, metrics: dict[str, float]) -> int:
    """The metrics of a server-side check (SSH) of an agentless device, stored as an
    agent's are (registered with devices.ssh.telemetry by AnalyticsConfig).

    Names, values and counts are checked by the agents' own field; a refusal is
    a CheckMetricsRefused (or TooManyMetricNames) naming the first bad metric."""
    try:
        metrics = MetricsField().to_internal_value(metrics)
    except ValidationError as exc:
        raise CheckMetricsRefused(_first_error(exc.detail)) from None
    return _samples_store(device_pk=device.pk, samples=[(at, metrics)]).values


def _first_error(detail: object) -> str:
    """The first message of a DRF error detail, after the (quoted) metric it names."""
    if isinstance(detail, dict):
        name, messages = next(iter(detail.items()))
        return f"{str(name)[:100]!r}: {_first_error(messages)}"
    if isinstance(detail, list):
        return _first_error(detail[0])
    return str(detail)


def _samples_store(
    *, device_pk: int, samples: Samples, batch_id: str | None = None
) -> IngestResult:
    values = sum(len(metrics) for _, metrics in samples)
    names = {name for _, metrics in samples for name in metrics}
    _check_metric_name_limit(device_pk, names)
    ids = metric_ids_for(names)
    rows, newest = [], {}
    for ts, metrics in samples:
        db_ts = _db_time(ts)
        for name, value in metrics.items():
            metric_pk = ids[name]
            rows.append((device_pk, metric_pk, db_ts, value))
            if metric_pk not in newest or newest[metric_pk][0] < ts:
                newest[metric_pk] = (ts, db_ts, value)
    latest_rows = [(device_pk, pk, db_ts, v) for pk, (_, db_ts, v) in newest.items()]
    late = _late_range([ts for ts, _ in samples])
    if batch_id is None and late is None and _fits_one_statement(rows):
        # The common push (HOMEPOT's flat payload, a check's metrics): a single
        # statement is atomic by itself, so no BEGIN and COMMIT round trips.
        _samples_insert_one_statement(rows, latest_rows)
    else:
        with transaction.atomic():
            if batch_id and not _record_batch(device_pk, batch_id, len(samples), values):
                return IngestResult(batch_id, 0, 0, duplicate=True)
            _insert_many(*_sample_insert(), rows)
            _insert_many(*_latest_upsert(), latest_rows)
            if late is not None:
                RollupBacklog.objects.create(device_id=device_pk, start=late[0], end=late[1])
    # Now after the single statement, or once the surrounding transaction commits.
    transaction.on_commit(lambda: _ingest_committed(device_pk, names, len(samples), values))
    return IngestResult(batch_id, len(samples), values)


def _ingest_committed(device_pk: int, names: set[str], samples: int, values: int) -> None:
    _remember_names(device_pk, names)
    ingest_counted(samples=samples, values=values)


def _sample_insert() -> tuple[str, str]:
    """Head and tail of the raw rows' INSERT; a sample stored before is kept as it was."""
    return f"INSERT INTO {_table(Sample)} {_COLUMNS}", "ON CONFLICT DO NOTHING"


def _latest_upsert() -> tuple[str, str]:
    """Head and tail of the latest values' upsert: only a newer value replaces one
    (samples may arrive out of order)."""
    latest = _table(LatestValue)
    return (
        f"INSERT INTO {latest} {_COLUMNS}",
        f"ON CONFLICT (device_id, metric_id) DO UPDATE SET ts = excluded.ts,"
        f" value = excluded.value WHERE {latest}.ts < excluded.ts",
    )


_COLUMNS = "(device_id, metric_id, ts, value)"


def _fits_one_statement(rows: list[tuple]) -> bool:
    # SQLite has no INSERT inside WITH; big pushes go in chunks.
    return connection.vendor == "postgresql" and 0 < len(rows) <= ROWS_PER_STATEMENT


def _samples_insert_one_statement(rows: list[tuple], latest_rows: list[tuple]) -> None:
    """Raw rows and latest values in one PostgreSQL statement (a data-modifying
    WITH): both are stored or neither, in one round trip."""
    (sample_head, sample_tail), (latest_head, latest_tail) = _sample_insert(), _latest_upsert()
    sql = (
        f"WITH raw AS ({sample_head} VALUES {_placeholders(len(rows))} {sample_tail})"
        f" {latest_head} VALUES {_placeholders(len(latest_rows))} {latest_tail}"
    )
    params = [v for row in rows for v in row] + [v for row in latest_rows for v in row]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _late_range(timestamps: list[datetime]) -> tuple[datetime, datetime] | None:
    """The range to re-roll when samples are older than what the next rollup
    run recomputes (a backlog entry); None when they are recent."""
    oldest = min(timestamps)
    if oldest < timezone.now() - timedelta(seconds=settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS):
        return oldest, max(timestamps)
    return None


# --- Rollups ------------------------------------------------------------------------------------

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def _floor(ts: datetime, unit: timedelta) -> datetime:
    seconds = int(unit.total_seconds())
    return datetime.fromtimestamp(int(ts.timestamp()) // seconds * seconds, tz=ts.tzinfo)


def _upsert_rollups(model: type[RollupMinute | RollupHour], grouped: QuerySet) -> int:
    """INSERT ... SELECT: the database aggregates and upserts in one statement,
    nothing passes through Python. The ORM writes the grouped SELECT for
    either database; its columns are in the order of the INSERT list."""
    select_sql, params = grouped.query.sql_with_params()
    quote = connection.ops.quote_name
    columns = ["device_id", "metric_id", "bucket", "min", "max", "sum", "count"]
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns[3:])
    sql = (
        f"INSERT INTO {_table(model)} ({', '.join(map(quote, columns))}) {select_sql}"
        f" ON CONFLICT (device_id, metric_id, bucket) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# Rollups read values clamped to these bounds, so a value stored before the
# API bounded them (or written around it) can neither overflow a SUM nor carry
# Infinity into a rollup. Ingest refuses |v| > TELEMETRY_MAX_ABS_VALUE, so the
# clamp changes nothing for data that came through the API.
# A raised TELEMETRY_MAX_ABS_VALUE widens the clamp, up to 1e250: a million of
# those still sum far below the largest double.
VALUE_CLAMP_MAX = 1e250
# Minute sums stay below 1e256 that way; an hour adds sixty of them.
SUM_CLAMP = 1e300


def _value_clamp() -> float:
    return min(max(1e15, settings.TELEMETRY_MAX_ABS_VALUE), VALUE_CLAMP_MAX)


def _clamped(column: str, limit: float) -> Least:
    low, high = Value(-limit, output_field=FloatField()), Value(limit, output_field=FloatField())
    return Least(Greatest(F(column), low), high)


def rollup_minutes(*, start: datetime, end: datetime, device_pk: int | None = None) -> int:
    samples = Sample.objects.filter(ts__gte=start, ts__lt=end)
    if device_pk is not None:
        samples = samples.filter(device_id=device_pk)
    value = _clamped("value", _value_clamp())
    rows = (
        samples.annotate(bucket=TruncMinute("ts"), clamped=value)
        .values("device_id", "metric_id", "bucket")
        .annotate(min=Min("clamped"), max=Max("clamped"), sum=Sum("clamped"), count=Count("ts"))
        .order_by()
    )
    return _upsert_rollups(RollupMinute, rows)


def rollup_hours(*, start: datetime, end: datetime, device_pk: int | None = None) -> int:
    minutes = RollupMinute.objects.filter(bucket__gte=start, bucket__lt=end)
    if device_pk is not None:
        minutes = minutes.filter(device_id=device_pk)
    rows = (
        minutes.annotate(
            hour=TruncHour("bucket"),
            lo=_clamped("min", _value_clamp()),
            hi=_clamped("max", _value_clamp()),
            total=_clamped("sum", SUM_CLAMP),
        )
        .values("device_id", "metric_id", "hour")
        .annotate(min=Min("lo"), max=Max("hi"), sum=Sum("total"), count=Sum("count"))
        .order_by()
    )
    return _upsert_rollups(RollupHour, rows)


def _rollup_isolated(
    rollup: Callable[..., int], devices: QuerySet, *, start: datetime, end: datetime
) -> int:
    """Roll up [start, end) for the fleet in one statement; if that fails,
    device by device, so one device's rows can never hold back the others.

    A device that still fails is logged with the range and skipped: its
    rollups of that range stay missing (the clamped SQL above leaves no known
    way for a device's data to fail; this is the last line of defence)."""
    try:
        with transaction.atomic():
            return rollup(start=start, end=end)
    except DatabaseError:
        logger.exception(
            "fleet-wide %s failed for %s..%s; rolling up per device", rollup.__name__, start, end
        )
    done = 0
    for device_pk in devices.values_list("device_id", flat=True).distinct().order_by():
        try:
            with transaction.atomic():
                done += rollup(start=start, end=end, device_pk=device_pk)
        except DatabaseError:
            logger.exception(
                "%s failed for device pk %s, %s..%s; the others go on",
                rollup.__name__,
                device_pk,
                start,
                end,
            )
    return done


@dataclass
class RollupReport:
    minutes: int = 0
    hours: int = 0
    backlog: int = 0


def _resume_from(default: datetime, horizon: datetime) -> datetime:
    """Where minute rollups start: the recent lookback, or earlier if they
    stopped for a while, or the oldest raw sample the very first time."""
    progress = RollupProgress.objects.filter(name="minute").first()
    if progress is not None:
        start = min(default, progress.until)
    else:
        oldest = Sample.objects.filter(ts__gte=horizon).aggregate(oldest=Min("ts"))["oldest"]
        start = _floor(oldest, MINUTE) if oldest is not None else default
    return max(start, _floor(horizon, MINUTE))


def telemetry_rollup(*, now: datetime | None = None) -> RollupReport:
    """Roll up closed minutes and hours, then re-roll late-arrived ranges.

    A run recomputes the last TELEMETRY_ROLLUP_LOOKBACK_SECONDS, or resumes
    where rollups stopped; a long catch-up is done in slices of
    TELEMETRY_ROLLUP_MAX_SPAN_HOURS, one per run.
    """
    now = now or timezone.now()
    lookback = timedelta(seconds=settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS)
    raw_horizon = now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    minute_start = _resume_from(_floor(now - lookback, MINUTE), raw_horizon)
    minute_end = min(
        _floor(now, MINUTE),
        minute_start + timedelta(hours=settings.TELEMETRY_ROLLUP_MAX_SPAN_HOURS),
    )
    report = RollupReport()
    report.minutes = _rollup_isolated(
        rollup_minutes,
        Sample.objects.filter(ts__gte=minute_start, ts__lt=minute_end),
        start=minute_start,
        end=minute_end,
    )
    RollupProgress.objects.update_or_create(name="minute", defaults={"until": minute_end})
    # Hours are built from minutes: those touched by this run, once they are closed.
    hour_start, hour_end = _floor(minute_start, HOUR), _floor(minute_end, HOUR)
    report.hours = _rollup_isolated(
        rollup_hours,
        RollupMinute.objects.filter(bucket__gte=hour_start, bucket__lt=hour_end),
        start=hour_start,
        end=hour_end,
    )
    for backlog in RollupBacklog.objects.all()[:1000]:
        report.backlog += _rollup_backlog(backlog, now)
    return report


def _rollup_backlog(backlog: RollupBacklog, now: datetime) -> int:
    """Re-roll one late range; 1 if done. A failing one stays for the next run."""
    start = _floor(backlog.start, HOUR)
    end = min(_floor(backlog.end, MINUTE) + MINUTE, _floor(now, MINUTE))
    hours_end = min(_floor(end, HOUR) + HOUR, _floor(now, HOUR))
    try:
        with transaction.atomic():
            rollup_minutes(start=start, end=end, device_pk=backlog.device_id)
            rollup_hours(start=start, end=hours_end, device_pk=backlog.device_id)
            backlog.delete()
    except DatabaseError:
        logger.exception("re-rolling %s failed; kept for the next run", backlog)
        return 0
    return 1


@dataclass
class PruneReport:
    samples: int = 0
    minutes: int = 0
    hours: int = 0
    batches: int = 0


def telemetry_prune(*, now: datetime | None = None) -> PruneReport:
    """Delete what is older than each retention horizon; on PostgreSQL raw
    samples go a whole day's partition at a time (analytics/partitions.py)."""
    now = now or timezone.now()

    def horizon(days: int) -> datetime:
        return now - timedelta(days=days)

    raw = horizon(settings.TELEMETRY_RAW_RETENTION_DAYS)
    report = PruneReport(
        minutes=RollupMinute.objects.filter(
            bucket__lt=horizon(settings.TELEMETRY_MINUTE_RETENTION_DAYS)
        ).delete()[0],
        hours=RollupHour.objects.filter(
            bucket__lt=horizon(settings.TELEMETRY_HOUR_RETENTION_DAYS)
        ).delete()[0],
        # a batch older than raw retention could not be stored again anyway
        batches=IngestBatch.objects.filter(received_at__lt=raw).delete()[0],
    )
    # Last: a partition drop that times out on its lock fails the run after the rest is done.
    report.samples = _samples_prune(now, raw)
    return report


def _samples_prune(now: datetime, raw_horizon: datetime) -> int:
    if partitions.partitioned():
        return partitions.partitions_drop_expired(now)
    return Sample.objects.filter(ts__lt=raw_horizon).delete()[0]


# --- Thermal frames ------------------------------------------------------------------------------


def thermal_frame_store(
    *, identity: DeviceIdentity, ts: datetime, width: int, height: int, values: list[float]
) -> ThermalFrame:
    """Keep the frame (and only the newest THERMAL_FRAMES_KEPT per device), and
    its summary as ordinary metrics so it can be charted and alerted on."""
    summary = {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}
    with transaction.atomic():
        frame = ThermalFrame.objects.create(
            device_id=identity.pk, ts=ts, width=width, height=height, values=values, **summary
        )
        keep = ThermalFrame.objects.filter(device_id=identity.pk).values_list("pk", flat=True)[
            : settings.THERMAL_FRAMES_KEPT
        ]
        ThermalFrame.objects.filter(device_id=identity.pk).exclude(pk__in=list(keep)).delete()
        telemetry_ingest(
            identity=identity, samples=[(ts, {f"thermal.{k}": v for k, v in summary.items()})]
        )
    return frame
