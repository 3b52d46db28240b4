"""Raw samples partitioned by day on PostgreSQL (analytics/partitions.py,
migration 0005): created ahead, rows of a missing day kept in the default
partition until their day exists, whole days dropped by retention, 24-hour
queries reading only their days. SQLite keeps the plain table.

Days are a year ahead of today, beyond the partitions the test database got
after migrate, so each test makes its own."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import partitions, queries, services, tasks
from analytics.models import Sample
from analytics.partitions import partition_name, partitions_drop_expired, partitions_ensure
from devices.auth import DeviceIdentity

DAY = timedelta(days=1)
D0 = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) + 400 * DAY

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="partitions are PostgreSQL's: SQLite keeps the plain table (CI sets DATABASE_URL)",
)


@pytest.fixture
def identity(agent) -> DeviceIdentity:  # noqa: ANN001
    return DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)


@pytest.fixture(autouse=True)
def _two_days_ahead(settings) -> None:  # noqa: ANN001
    settings.TELEMETRY_PARTITIONS_AHEAD = 2


def store(identity: DeviceIdentity, *moments: datetime, name: str = "v") -> None:
    """Through the ingest's own INSERT ... ON CONFLICT DO NOTHING."""
    services.telemetry_ingest(identity=identity, samples=[(at, {name: 1.0}) for at in moments])


def partition_of(ts: datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM analytics_sample WHERE ts = %s", [ts])
        return cursor.fetchone()[0]


def table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def partition_names() -> set[str]:
    return {p.name for p in partitions.partitions_list()}


def days(first: datetime, count: int) -> list[str]:
    return [partition_name(first + n * DAY) for n in range(count)]


@pytest.fixture
def far_partitions_dropped():  # noqa: ANN201
    """For tests that commit: the far days' partitions go again afterwards."""
    yield
    with connection.cursor() as cursor:
        for partition in partitions.partitions_list():
            if partition.start is not None and partition.start >= D0:
                cursor.execute(f"DROP TABLE {partition.name}")


# --- Creating ahead ------------------------------------------------------------------------------


@on_postgresql
@pytest.mark.django_db
def test_today_and_the_days_ahead_get_partitions_once():
    assert partitions_ensure(D0 + timedelta(hours=15)) == days(D0, 3)
    assert partitions_ensure(D0 + timedelta(hours=23)) == []
    assert partitions_ensure(D0 + DAY) == days(D0 + 3 * DAY, 1)
    assert set(days(D0, 4)) <= partition_names()


@on_postgresql
@pytest.mark.django_db
def test_samples_land_in_their_days_partition_once(identity):
    partitions_ensure(D0)
    at = D0 + DAY + timedelta(hours=7)
    store(identity, at)
    store(identity, at)  # a retried upload: ON CONFLICT on the partitioned primary key

    assert partition_of(at) == partition_name(D0 + DAY)
    assert Sample.objects.filter(ts=at).count() == 1


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("far_partitions_dropped")
def test_two_ensures_at_once_create_each_partition_once():
    start = threading.Barrier(2)

    def ensure() -> list[str]:
        try:
            start.wait()
            return partitions_ensure(D0)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        created = [name for f in [pool.submit(ensure) for _ in range(2)] for name in f.result()]

    assert sorted(created) == days(D0, 3)


# --- A day without its partition (beat was down) ------------------------------------------


@on_postgresql
@pytest.mark.django_db
def test_a_sample_of_a_day_without_partition_waits_in_the_default_and_moves_later(identity):
    partitions_ensure(D0)
    late = [D0 + 5 * DAY + timedelta(hours=h) for h in (1, 2)]
    store(identity, *late)
    assert {partition_of(at) for at in late} == {"analytics_sample_default"}

    # the next run, days later, creates the day's partition and moves its rows there
    assert partition_name(D0 + 5 * DAY) in partitions_ensure(D0 + 4 * DAY)

    assert {partition_of(at) for at in late} == {partition_name(D0 + 5 * DAY)}
    assert Sample.objects.filter(ts__in=late).count() == 2


@on_postgresql
@pytest.mark.django_db
def test_a_day_waiting_in_the_default_gets_its_partition_even_behind_the_days_ahead(identity):
    partitions_ensure(D0)
    waiting = D0 + 9 * DAY
    store(identity, waiting)

    assert partitions_ensure(D0) == [partition_name(waiting)]
    assert partition_of(waiting) == partition_name(waiting)


# --- Retention -----------------------------------------------------------------------------------


@on_postgresql
@pytest.mark.django_db
def test_retention_drops_a_day_once_all_of_it_is_past_the_horizon(identity, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 1
    partitions_ensure(D0)
    old = [D0 + timedelta(hours=h) for h in (1, 12, 23)]
    kept = D0 + DAY + timedelta(hours=1)
    store(identity, *old, kept)

    # the horizon is inside day 0: the day stays whole (kept at most a day longer)
    report = services.telemetry_prune(now=D0 + 2 * DAY - timedelta(minutes=1))
    assert report.samples == 0
    assert table_exists(partition_name(D0))

    report = services.telemetry_prune(now=D0 + 2 * DAY)
    assert report.samples == 3
    assert not table_exists(partition_name(D0))
    assert partition_name(D0) not in partition_names()  # pg_inherits
    assert list(Sample.objects.values_list("ts", flat=True)) == [kept]
    assert table_exists(partition_name(D0 + DAY))


@on_postgresql
@pytest.mark.django_db
def test_rows_past_the_horizon_in_the_default_partition_are_deleted(identity, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 1
    stray, recent = D0 - 3 * DAY, D0 - timedelta(hours=1)
    store(identity, stray, recent)  # no partition for those days: the default holds them
    assert partition_of(stray) == "analytics_sample_default"

    assert partitions_drop_expired(D0) == 1

    assert list(Sample.objects.values_list("ts", flat=True)) == [recent]
    assert table_exists("analytics_sample_default")


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_drop_that_cannot_get_its_lock_gives_up_instead_of_queueing_queries(
    settings, monkeypatch
):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 1
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT_MS", 200)
    reading, release = threading.Event(), threading.Event()

    def long_query() -> None:
        try:
            with transaction.atomic():
                Sample.objects.filter(ts__lt=D0).exists()  # holds a share lock on the parent
                reading.set()
                release.wait(10)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(long_query)
        assert reading.wait(10)
        try:
            # the legacy partition (before the migration's next day) is all past this horizon
            with pytest.raises(OperationalError, match="lock timeout"):
                partitions_drop_expired(D0)
        finally:
            release.set()
            future.result()
    assert table_exists("analytics_sample_legacy")


# --- Reading -------------------------------------------------------------------------------------


@on_postgresql
@pytest.mark.django_db
def test_a_24_hour_series_reads_only_the_two_days_it_spans(identity):
    partitions_ensure(D0)  # D0, D0 + 1, D0 + 2, and the legacy and default partitions
    start = D0 + timedelta(hours=12)
    store(identity, start, start + timedelta(hours=20))

    with CaptureQueriesContext(connection) as captured:
        series = queries.metric_series(
            device_pk=identity.pk, name="v", start=start, end=start + DAY, step=10, agg="avg"
        )
    assert series.source == "raw" and len(series.points) == 2
    (sql,) = [q["sql"] for q in captured.captured_queries if "analytics_sample" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    read = set(re.findall(r"analytics_sample_(?:p\d{8}|default|legacy)\b", plan))
    assert read == {partition_name(D0), partition_name(D0 + DAY)}


# --- When partitions are made ---------------------------------------------------------------------


@on_postgresql
@pytest.mark.django_db
def test_after_migrate_and_from_beat_the_days_ahead_exist():
    tomorrow = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) + DAY
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition_name(tomorrow + DAY)}")

    partitions.partitions_after_migrate(sender=None, using="default")
    assert table_exists(partition_name(tomorrow + DAY))

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition_name(tomorrow + DAY)}")
    assert tasks.ensure_telemetry_partitions() == [partition_name(tomorrow + DAY)]


def test_a_starting_worker_queues_the_ensure(monkeypatch):
    from celery.signals import worker_ready

    queued = []
    monkeypatch.setattr(tasks.ensure_telemetry_partitions, "delay", lambda: queued.append(1))
    worker_ready.send(sender=None)
    assert queued == [1]


def test_beat_ensures_partitions_on_its_own_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["ensure-telemetry-partitions"]
    assert entry["task"] == "analytics.tasks.ensure_telemetry_partitions"
    assert entry["schedule"] == settings.TELEMETRY_PARTITION_SECONDS == 3600


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite's plain table")
@pytest.mark.django_db
def test_sqlite_keeps_the_plain_table_and_prunes_with_a_delete(identity, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 1
    store(identity, D0, D0 + 2 * DAY)

    assert partitions_ensure(D0) == [] and not partitions.partitioned()
    assert services.telemetry_prune(now=D0 + 2 * DAY).samples == 1
    assert list(Sample.objects.values_list("ts", flat=True)) == [D0 + 2 * DAY]


# --- The migration -----------------------------------------------------------------------------

BEFORE = [("analytics", "0004_alerting")]
AFTER = [("analytics", "0005_sample_partitions")]


def migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def relation(name: str) -> tuple[str, int, int] | None:
    """(relkind, relfilenode, oid): the same file node means the rows were not copied."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relkind, relfilenode, oid FROM pg_class WHERE oid = to_regclass(%s)", [name]
        )
        return cursor.fetchone()


@pytest.fixture
def back_to_latest():  # noqa: ANN201
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    partitions_ensure(timezone.now())


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_latest")
def test_the_migration_partitions_a_table_with_rows_without_copying_them():
    now = timezone.now()
    rows = {now - 3 * DAY: 1.0, now: 2.0, now + 3 * DAY: 3.0}  # the last one: a clock ahead
    migrate(BEFORE)
    with connection.cursor() as cursor:
        for ts, value in rows.items():
            cursor.execute(
                "INSERT INTO analytics_sample (device_id, metric_id, ts, value)"
                " VALUES (7, 1, %s, %s)",
                [ts, value],
            )
    table, key = relation("analytics_sample"), relation("analytics_sample_pkey")
    assert table[0] == "r"

    migrate(AFTER)

    assert relation("analytics_sample")[0] == "p"
    assert relation("analytics_sample_legacy")[1:] == table[1:]  # renamed, not copied
    assert relation("analytics_sample_legacy_pkey")[1:] == key[1:]  # attached, not rebuilt
    assert dict(Sample.objects.values_list("ts", "value")) == rows
    assert partition_of(now) == "analytics_sample_legacy"
    assert partition_of(now + 3 * DAY) == "analytics_sample_default"
    partitions_ensure(now)  # what post_migrate runs
    assert partition_of(now + 3 * DAY) == partition_name(partitions._day(now + 3 * DAY))

    migrate(BEFORE)

    assert relation("analytics_sample")[0] == "r"
    assert dict(Sample.objects.values_list("ts", "value")) == rows
