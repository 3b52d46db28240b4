"""Raw telemetry partitioned by day on PostgreSQL (migration 0005); SQLite keeps
the plain table and everything here does nothing there.

analytics_sample's partitions:

- ``analytics_sample_pYYYYMMDD``: one per UTC day, [day, day + 1). Daily: with
  30 days of retention that is about 40 tables (30 kept, the days ahead, the
  default), which the planner prunes cheaply; a 24-hour query reads at most
  two; retention frees a day at a time.
- ``analytics_sample_default``: rows of a day that has no partition (beat was
  down). Ingest never fails for want of a partition, and the next ensure moves
  those rows into their day's new partition, so the default stays small (each
  new partition makes PostgreSQL check the default for rows of its range).
- ``analytics_sample_legacy``: the table as it was before the migration,
  everything before the migration's next day.

Retention drops a daily partition once the whole day is past the horizon
(TELEMETRY_RAW_RETENTION_DAYS): a raw sample is kept at least that long and
at most a day longer, and no row is deleted one by one. The legacy and default
partitions, which have no lower bound, are pruned row by row (the legacy one as
the plain table was, until it is dropped whole).

Changing the partitions takes an exclusive lock on the parent (DROP) or on the
default partition (ATTACH), so statements wait at most LOCK_TIMEOUT_MS and the
run fails, to be retried by beat, rather than queue every query behind a long
one. Ensure and drop hold one advisory lock, so two runs never interleave.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PARENT = "analytics_sample"
DEFAULT = f"{PARENT}_default"
DAY = timedelta(days=1)
# pg_advisory_xact_lock key of partition changes ("HOMEsamp").
LOCK_KEY = 0x484F_4D45_7361_6D70
LOCK_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: from MINVALUE (legacy) or the default partition
    end: datetime | None  # None: the default partition
    default: bool = False


def partitioned() -> bool:
    """True where analytics_sample is a partitioned table (PostgreSQL, migrated)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [PARENT])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def partitions_list() -> list[Partition]:
    """The partitions with their bounds, read back from the catalog."""
    # pg_get_expr renders the bounds as literals in this session's time zone,
    # with its offset, so casting them back in the same session is exact.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.bound = 'DEFAULT',"
            " substring(c.bound FROM $$FROM \\('([^']+)'\\)$$)::timestamptz,"
            " substring(c.bound FROM $$TO \\('([^']+)'\\)$$)::timestamptz"
            " FROM (SELECT relname, pg_get_expr(relpartbound, oid) AS bound FROM pg_class"
            "  WHERE oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)) c"
            " ORDER BY 1",
            [PARENT],
        )
        rows = cursor.fetchall()
    return [Partition(name, start, end, default) for name, default, start, end in rows]


def partition_name(day: datetime) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _literal(moment: datetime) -> str:
    # Our own datetimes, never user input: DDL takes no bind parameters.
    return f"'{moment.astimezone(UTC).isoformat()}'"


def _lock() -> None:
    """Serialize partition changes (inside the caller's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        cursor.execute(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_MS)}")


def _execute(sql: str, params: list[Any] | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- Creating ahead -----------------------------------------------------------------------------


def partitions_ensure(now: datetime) -> list[str]:
    """Create the partitions of today and the TELEMETRY_PARTITIONS_AHEAD days
    after it, and of every day within retention whose rows wait in the default
    partition; the names created. Idempotent; concurrent runs take turns."""
    if not partitioned():
        return []
    created = []
    with transaction.atomic():
        _lock()
        existing = partitions_list()
        if not any(p.default for p in existing):
            _execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
        for day in sorted(_days_wanted(now)):
            if not any(_overlaps(p, day) for p in existing):
                _partition_create(day)
                created.append(partition_name(day))
    if created:
        logger.info("telemetry partitions created: %s", ", ".join(created))
    return created


def _days_wanted(now: datetime) -> set[datetime]:
    today = _day(now)
    ahead = {today + n * DAY for n in range(settings.TELEMETRY_PARTITIONS_AHEAD + 1)}
    horizon = _day(now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('day', ts, 'UTC') FROM {DEFAULT} WHERE ts >= %s",
            [horizon],
        )
        waiting = {_day(row[0]) for row in cursor.fetchall()}
    return ahead | waiting


def _overlaps(partition: Partition, day: datetime) -> bool:
    if partition.default:
        return False
    starts_before_end = partition.start is None or partition.start < day + DAY
    return starts_before_end and partition.end is not None and partition.end > day


def _partition_create(day: datetime) -> None:
    """Build the day's table beside the parent and ATTACH it: CREATE TABLE ...
    PARTITION OF would lock the whole parent against reads, ATTACH does not
    (only the default partition, which it checks for rows of the range)."""
    name, start, end = partition_name(day), _literal(day), _literal(day + DAY)
    _execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
    # Proves the range to ATTACH, which then need not scan the new table.
    _execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_ts CHECK (ts >= {start} AND ts < {end})")
    # Inserts routed to the default wait until the moved rows are attached.
    _execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
    moved = _execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= {start} AND ts < {end}"
        " RETURNING device_id, metric_id, ts, value)"
        f" INSERT INTO {name} (device_id, metric_id, ts, value) SELECT * FROM moved"
    )
    # Builds the primary key and BRIN index of the partition (small: at most the moved rows).
    _execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
    if moved:
        logger.warning("moved %s rows of %s from %s into %s", moved, day.date(), DEFAULT, name)


# --- Retention ----------------------------------------------------------------------------------


def partitions_drop_expired(now: datetime) -> int:
    """Drop the partitions entirely older than the raw retention horizon, and
    delete the rows past it from those without a lower bound (legacy, default);
    the number of rows removed."""
    if not partitioned():
        return 0
    horizon = now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    with transaction.atomic():
        _lock()
        existing = partitions_list()
        expired = [p for p in existing if p.end is not None and p.end <= horizon]
        removed = sum(
            _execute(f"DELETE FROM {p.name} WHERE ts < %s", [horizon])
            for p in existing
            if p.start is None and p not in expired
        )
        # Counted before any DROP: a DROP locks the parent until commit.
        removed += sum(_count(p.name) for p in expired)
        for partition in expired:
            _execute(f"DROP TABLE {partition.name}")
    if expired:
        logger.info("telemetry partitions dropped: %s", ", ".join(p.name for p in expired))
    return removed


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def partitions_after_migrate(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001
    """post_migrate: a fresh install (or one migrated after a long stop) has
    its partitions before any sample arrives."""
    if kwargs.get("using", DEFAULT_DB_ALIAS) == DEFAULT_DB_ALIAS:
        partitions_ensure(timezone.now())
