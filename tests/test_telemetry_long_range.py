"""GET /api/v1/devices/{device_id}/metrics over ranges older than raw retention.

Raw samples are kept TELEMETRY_RAW_RETENTION_DAYS, minute rollups
TELEMETRY_MINUTE_RETENTION_DAYS, hour rollups TELEMETRY_HOUR_RETENTION_DAYS.
A range that starts before a source's horizon is answered from the next
coarser source that still covers it, at a step that source can answer, and
the response says which resolution it used.
"""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from analytics.models import MetricName, RollupHour, RollupMinute


@pytest.fixture(autouse=True)
def _retention(settings) -> None:  # noqa: ANN001
    settings.TELEMETRY_RAW_RETENTION_DAYS = 30
    settings.TELEMETRY_MINUTE_RETENTION_DAYS = 180
    settings.TELEMETRY_HOUR_RETENTION_DAYS = 1825


def _hour(days_ago: int) -> datetime:
    return (timezone.now() - timedelta(days=days_ago)).replace(minute=0, second=0, microsecond=0)


def _rollup(model, agent, bucket: datetime, values: list[float]) -> None:  # noqa: ANN001
    metric, _ = MetricName.objects.get_or_create(name="temp")
    model.objects.create(
        device=agent.device,
        metric=metric,
        bucket=bucket,
        min=min(values),
        max=max(values),
        sum=sum(values),
        count=len(values),
    )


def _get(client, viewer, start: datetime, end: datetime, step: int) -> dict:  # noqa: ANN001
    client.force_authenticate(viewer)
    response = client.get(
        "/api/v1/devices/pi-1/metrics",
        {"name": "temp", "start": start.isoformat(), "end": end.isoformat(), "step": step},
    )
    assert response.status_code == 200, response.content
    return response.json()


def _points(body: dict) -> list[tuple[datetime, float]]:
    return [
        (datetime.fromisoformat(p["ts"].replace("Z", "+00:00")), p["value"]) for p in body["points"]
    ]


def test_a_recent_range_says_it_was_answered_from_raw_samples(client, viewer, agent):
    MetricName.objects.create(name="temp")
    end = timezone.now()

    body = _get(client, viewer, end - timedelta(hours=1), end, step=30)

    assert (body["resolution"], body["step"], body["source"]) == ("raw", 30, "raw")


def test_a_step_finer_than_a_minute_before_the_raw_horizon_is_answered_from_minute_rollups(
    client, viewer, agent
):
    bucket = _hour(days_ago=40)
    _rollup(RollupMinute, agent, bucket, [1.0, 3.0])
    _rollup(RollupMinute, agent, bucket + timedelta(minutes=1), [5.0])

    body = _get(client, viewer, bucket, bucket + timedelta(minutes=10), step=30)

    assert (body["resolution"], body["step"], body["source"]) == ("1m", 60, "minute")
    assert _points(body) == [(bucket, 2.0), (bucket + timedelta(minutes=1), 5.0)]


def test_a_range_before_the_minute_horizon_is_answered_from_hour_rollups(client, viewer, agent):
    bucket = _hour(days_ago=200)
    _rollup(RollupHour, agent, bucket, [2.0, 4.0])
    _rollup(RollupHour, agent, bucket + timedelta(hours=2), [7.0])

    body = _get(client, viewer, bucket, bucket + timedelta(hours=6), step=600)

    assert (body["resolution"], body["step"], body["source"]) == ("1h", 3600, "hour")
    assert _points(body) == [(bucket, 3.0), (bucket + timedelta(hours=2), 7.0)]


def test_a_step_is_raised_to_a_whole_multiple_of_the_resolution(client, viewer, agent):
    bucket = _hour(days_ago=200)
    _rollup(RollupHour, agent, bucket, [1.0])

    body = _get(client, viewer, bucket, bucket + timedelta(days=1), step=5400)  # 1.5 h

    assert (body["resolution"], body["step"]) == ("1h", 7200)
    start = datetime.fromisoformat(body["start"].replace("Z", "+00:00"))
    assert start.timestamp() % 7200 == 0 and start <= bucket


def test_whole_hour_steps_still_read_hour_rollups_for_recent_ranges(client, viewer, agent):
    bucket = _hour(days_ago=1)
    _rollup(RollupHour, agent, bucket, [4.0])

    body = _get(client, viewer, bucket, bucket + timedelta(hours=1), step=3600)

    assert (body["resolution"], body["step"]) == ("1h", 3600)
    assert _points(body) == [(bucket, 4.0)]


def test_the_schema_documents_the_resolution(client):
    schema = client.get("/api/schema", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    series = components["Series"]
    resolution = series["properties"]["resolution"]
    ref = resolution.get("$ref") or resolution["allOf"][0]["$ref"]  # enums are components
    resolution = components[ref.rsplit("/", 1)[1]]

    assert resolution["enum"] == ["raw", "1m", "1h"]
    assert "resolution" in series["required"]
