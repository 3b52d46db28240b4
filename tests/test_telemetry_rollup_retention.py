"""Rollups and retention, run with a controlled clock."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import services, tasks
from analytics.models import IngestBatch, RollupBacklog, RollupHour, RollupMinute, Sample
from devices.auth import DeviceIdentity

HOUR0 = (timezone.now() - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def identity(agent) -> DeviceIdentity:
    return DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)


def ingest(identity, offsets_and_values, name="v"):
    samples = [(HOUR0 + timedelta(seconds=s), {name: v}) for s, v in offsets_and_values]
    services.telemetry_ingest(identity=identity, samples=samples)


def rollup_row(model, minutes: int):
    row = model.objects.get(bucket=HOUR0 + timedelta(minutes=minutes))
    return row.min, row.max, row.sum, row.count


def test_minute_and_hour_rollups_hold_min_max_sum_count(identity):
    ingest(identity, [(0, 1.0), (20, 5.0), (40, 3.0), (60, -2.0), (3599, 10.0)])

    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, seconds=30))

    assert rollup_row(RollupMinute, 0) == (1.0, 5.0, 9.0, 3)
    assert rollup_row(RollupMinute, 1) == (-2.0, -2.0, -2.0, 1)
    assert rollup_row(RollupMinute, 59) == (10.0, 10.0, 10.0, 1)
    assert rollup_row(RollupHour, 0) == (-2.0, 10.0, 17.0, 5)
    assert RollupMinute.objects.count() == 3


def test_only_closed_minutes_are_rolled_up(identity):
    ingest(identity, [(0, 1.0), (65, 2.0)])

    services.telemetry_rollup(now=HOUR0 + timedelta(seconds=90))

    assert list(RollupMinute.objects.values_list("bucket", flat=True)) == [HOUR0]
    assert not RollupHour.objects.exists()


def test_a_long_catch_up_is_done_in_slices(identity, settings):
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 86400  # nothing counts as late here
    settings.TELEMETRY_ROLLUP_MAX_SPAN_HOURS = 1
    ingest(identity, [(0, 1.0), (90 * 60, 2.0), (150 * 60, 3.0)])
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 60
    now = HOUR0 + timedelta(hours=4)

    services.telemetry_rollup(now=now)
    assert RollupMinute.objects.count() == 1  # the first hour, from the oldest sample
    services.telemetry_rollup(now=now)
    services.telemetry_rollup(now=now)

    assert RollupMinute.objects.count() == 3
    assert RollupHour.objects.count() == 3


def test_rolling_up_twice_changes_nothing(identity):
    ingest(identity, [(0, 1.0), (30, 3.0)])
    now = HOUR0 + timedelta(hours=1, minutes=1)

    services.telemetry_rollup(now=now)
    services.telemetry_rollup(now=now)

    assert rollup_row(RollupMinute, 0) == (1.0, 3.0, 4.0, 2)
    assert RollupMinute.objects.count() == 1


def test_samples_arriving_after_their_rollup_are_rolled_up_again(identity, settings):
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 600
    ingest(identity, [(0, 1.0)])
    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))
    assert rollup_row(RollupMinute, 0) == (1.0, 1.0, 1.0, 1)

    # a device's spool drains hours later: same minute, new sample
    ingest(identity, [(30, 7.0)])
    assert RollupBacklog.objects.count() == 1
    report = services.telemetry_rollup()

    assert report.backlog == 1
    assert rollup_row(RollupMinute, 0) == (1.0, 7.0, 8.0, 2)
    assert rollup_row(RollupHour, 0) == (1.0, 7.0, 8.0, 2)
    assert not RollupBacklog.objects.exists()


def test_rollups_resume_where_they_stopped(identity, settings):
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 86400  # nothing counts as late here
    ingest(identity, [(0, 1.0), (2 * 3600, 2.0)])
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 60
    services.telemetry_rollup(now=HOUR0 + timedelta(minutes=5))
    assert RollupMinute.objects.count() == 1
    assert not RollupBacklog.objects.exists()

    # beat was down for two hours: the next run covers the gap, not just the lookback
    services.telemetry_rollup(now=HOUR0 + timedelta(hours=2, minutes=5))

    assert RollupMinute.objects.count() == 2
    assert RollupHour.objects.filter(bucket=HOUR0).exists()


def test_prune_keeps_each_table_to_its_horizon(identity, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 1
    settings.TELEMETRY_MINUTE_RETENTION_DAYS = 2
    settings.TELEMETRY_HOUR_RETENTION_DAYS = 3
    services.telemetry_ingest(identity=identity, samples=[(HOUR0, {"v": 1.0})], batch_id="b1")
    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))

    def prune_after(days: float):
        return services.telemetry_prune(now=HOUR0 + timedelta(days=days))

    assert prune_after(0.5).samples == 0
    report = prune_after(1.5)
    assert (report.samples, report.minutes, report.hours) == (1, 0, 0)
    assert prune_after(2.5).minutes == 1
    assert prune_after(3.5).hours == 1
    assert not Sample.objects.exists() and not RollupHour.objects.exists()
    assert not IngestBatch.objects.filter(
        received_at__lt=timezone.now() - timedelta(days=2)
    ).exists()


def test_the_beat_tasks_run_rollup_and_prune(identity):
    services.telemetry_ingest(
        identity=identity, samples=[(timezone.now() - timedelta(minutes=3), {"v": 1.0})]
    )

    assert tasks.rollup_telemetry()["minutes"] == 1
    assert tasks.prune_telemetry() == {"samples": 0, "minutes": 0, "hours": 0, "batches": 0}
