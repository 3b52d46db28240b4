"""GET /api/v1/devices/{device_id}/metrics, .../metrics/latest, /api/v1/metrics/names"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from analytics import services
from analytics.models import MetricName, RollupHour

# A fixed hour, whole minutes: six samples a minute, 10 s apart.
T0 = (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def temperature(agent) -> dict[datetime, float]:
    """Two hours of 'temp' every 10 s: value = index mod 7 (varied, easy to recompute)."""
    samples = {T0 + timedelta(seconds=10 * i): float(i % 7) for i in range(720)}
    services.telemetry_ingest(
        identity=_identity(agent), samples=[(ts, {"temp": v}) for ts, v in samples.items()]
    )
    return samples


def _identity(agent):
    from devices.auth import DeviceIdentity

    return DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)


def expected(samples: dict[datetime, float], start: datetime, end: datetime, step: int, agg: str):
    buckets: dict[int, list[float]] = {}
    for ts, value in samples.items():
        if start <= ts < end:
            buckets.setdefault(int(ts.timestamp()) // step * step, []).append(value)
    fold = {"avg": lambda v: sum(v) / len(v), "min": min, "max": max, "sum": sum, "count": len}[agg]
    return [
        {"ts": datetime.fromtimestamp(k, tz=UTC), "value": fold(v)}
        for k, v in sorted(buckets.items())
    ]


def same(points: list[dict], wanted: list[dict]) -> bool:
    assert [p["ts"] for p in points] == [w["ts"] for w in wanted]
    assert [p["value"] for p in points] == pytest.approx([w["value"] for w in wanted])
    return True


def series(client, viewer, **params):
    client.force_authenticate(viewer)
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in params.items()}
    response = client.get("/api/v1/devices/pi-1/metrics", params)
    assert response.status_code == 200, response.content
    body = response.json()
    points = [
        {"ts": datetime.fromisoformat(p["ts"].replace("Z", "+00:00")), "value": p["value"]}
        for p in body["points"]
    ]
    return body, points


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count"])
@pytest.mark.parametrize("step", [30, 60, 300])
def test_raw_series_equal_hand_computed_aggregates(client, viewer, temperature, agg, step):
    start, end = T0 + timedelta(minutes=7), T0 + timedelta(minutes=97)

    body, points = series(client, viewer, name="temp", start=start, end=end, step=step, agg=agg)

    # start is rounded down to the step so that every bucket is whole
    aligned = datetime.fromtimestamp(int(start.timestamp()) // step * step, tz=UTC)
    assert body["start"].replace("Z", "+00:00") == aligned.isoformat()
    assert same(points, expected(temperature, aligned, end, step, agg))
    assert body["source"] == ("raw" if step == 30 else "minute")


@pytest.mark.parametrize("agg", ["avg", "min", "max", "count"])
def test_rollup_series_equal_the_raw_answer(client, viewer, temperature, agg):
    services.telemetry_rollup(now=T0 + timedelta(minutes=150))
    start, end = T0, T0 + timedelta(hours=2)

    minute_body, by_minute = series(
        client, viewer, name="temp", start=start, end=end, step=600, agg=agg
    )
    hour_body, by_hour = series(
        client, viewer, name="temp", start=start, end=end, step=3600, agg=agg
    )

    assert minute_body["source"] == "minute" and hour_body["source"] == "hour"
    assert same(by_minute, expected(temperature, start, end, 600, agg))
    assert same(by_hour, expected(temperature, start, end, 3600, agg))


def test_the_part_rollups_have_not_reached_comes_from_raw_samples(client, viewer, temperature):
    # rolled up to T0+60min only: the second hour exists only as raw samples
    services.telemetry_rollup(now=T0 + timedelta(minutes=60, seconds=5))
    start, end = T0, T0 + timedelta(hours=2)

    _, points = series(client, viewer, name="temp", start=start, end=end, step=60, agg="avg")

    assert len(points) == 120
    assert same(points, expected(temperature, start, end, 60, "avg"))


def test_the_default_range_is_the_last_24_hours(client, viewer, agent, temperature):
    body, points = series(client, viewer, name="temp")

    assert body["step"] == 60 and body["agg"] == "avg"
    assert len(points) == 120


def test_latest_values_and_names(client, viewer, make_agent):
    one, two = make_agent("pi-1"), make_agent("pi-2")
    now = timezone.now()
    services.telemetry_ingest(identity=_identity(one), samples=[(now, {"cpu": 5.0, "mem": 50.0})])
    services.telemetry_ingest(identity=_identity(two), samples=[(now, {"fan": 900.0})])
    client.force_authenticate(viewer)

    latest = client.get("/api/v1/devices/pi-1/metrics/latest").json()
    names = client.get("/api/v1/metrics/names").json()
    own_names = client.get("/api/v1/metrics/names?device=pi-2").json()

    assert {k: v["value"] for k, v in latest["metrics"].items()} == {"cpu": 5.0, "mem": 50.0}
    assert names["results"] == ["cpu", "fan", "mem"] and names["count"] == 3
    assert own_names["results"] == ["fan"]


def test_latest_values_take_one_query(client, viewer, agent, django_assert_num_queries):
    services.telemetry_ingest(
        identity=_identity(agent),
        samples=[(timezone.now(), {f"m{i}": float(i) for i in range(50)})],
    )
    client.force_authenticate(viewer)
    client.get("/api/v1/devices/pi-1/metrics/latest")

    # the device, then every latest value with its name: no query per metric
    with django_assert_num_queries(2):
        response = client.get("/api/v1/devices/pi-1/metrics/latest")

    assert len(response.json()["metrics"]) == 50


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"name": "nope"}, 404, "detail"),
        ({}, 400, "name"),
        ({"name": "temp\n"}, 400, "name"),  # matched whole, as at ingest
        ({"name": " temp"}, 400, "name"),
        ({"name": "temp", "step": 0}, 400, "step"),
        ({"name": "temp", "agg": "median"}, 400, "agg"),
        ({"name": "temp", "start": "soon"}, 400, "start"),
        (
            {"name": "temp", "step": 1, "start": (T0 - timedelta(days=20)).isoformat()},
            400,
            "detail",
        ),
        ({"name": "temp", "start": T0.isoformat(), "end": T0.isoformat()}, 400, "end"),
    ],
)
def test_bad_queries_are_4xx(client, viewer, temperature, params, status, field):
    client.force_authenticate(viewer)

    response = client.get("/api/v1/devices/pi-1/metrics", params)

    assert response.status_code == status
    assert field in response.json()


def test_reading_telemetry_needs_a_user_with_view_rights(client, agent):
    assert client.get("/api/v1/devices/pi-1/metrics/latest").status_code == 401
    assert client.get("/api/v1/devices/pi-1/metrics/latest", **agent.headers).status_code == 401


def test_a_range_older_than_raw_retention_is_answered_from_hour_rollups(
    client, viewer, agent, settings
):
    # Raw samples are kept 30 days, hour rollups five years: a query for the
    # last 90 days is legitimate and answered from the rollups.
    settings.TELEMETRY_RAW_RETENTION_DAYS = 30
    old = (timezone.now() - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)
    RollupHour.objects.create(
        device=agent.device,
        metric=MetricName.objects.create(name="temp"),
        bucket=old,
        min=1.0,
        max=3.0,
        sum=4.0,
        count=2,
    )
    start = timezone.now() - timedelta(days=90)

    body, points = series(client, viewer, name="temp", start=start, step=3600, agg="avg")

    assert body["source"] == "hour"
    assert points == [{"ts": old, "value": 2.0}]
