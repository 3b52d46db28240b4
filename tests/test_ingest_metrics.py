"""POST /api/v1/analytics/device-metrics"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from analytics.models import IngestBatch, LatestValue, Sample

URL = "/api/v1/analytics/device-metrics"

# What HOMEPOT's existing agents send.
FLAT = {
    "cpu_percent": 12.5,
    "memory_percent": 40.0,
    "disk_percent": 71.2,
    "network_latency_ms": None,
    "transaction_count": 3,
    "transaction_volume": 120.5,
    "error_rate": 0.0,
    "active_connections": 7,
    "collection_interval_seconds": 30,
    "extra_metrics": {"cpu_temp_c": 48.3},
}


def post(client, agent, body, **extra):
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post(URL, raw, content_type="application/json", **agent.headers, **extra)


def stored(device) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for name, value in Sample.objects.filter(device=device).values_list("metric__name", "value"):
        values.setdefault(name, []).append(value)
    return values


def batch(n: int = 2, start: datetime | None = None, batch_id: str = "b-1", **metrics) -> dict:
    start = start or timezone.now() - timedelta(minutes=5)
    metrics = metrics or {"cpu": 1.0, "mem": 2.0}
    return {
        "batch_id": batch_id,
        "samples": [
            {"ts": (start + timedelta(seconds=10 * i)).isoformat(), "metrics": metrics}
            for i in range(n)
        ],
    }


def test_the_flat_homepot_payload_is_stored_under_its_names(client, agent):
    response = post(client, agent, {**FLAT, "device_id": "pi-1"})

    assert response.status_code == 201
    assert response.json() == {"batch_id": None, "samples": 1, "values": 9, "duplicate": False}
    assert stored(agent.device) == {
        "cpu_percent": [12.5],
        "memory_percent": [40.0],
        "disk_percent": [71.2],
        "transaction_count": [3.0],
        "transaction_volume": [120.5],
        "error_rate": [0.0],
        "active_connections": [7.0],
        "collection_interval_seconds": [30.0],
        "cpu_temp_c": [48.3],
    }


def test_a_batch_is_stored_at_the_devices_timestamps(client, agent):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)

    response = post(client, agent, batch(3, start=start))

    assert response.status_code == 201
    assert response.json()["values"] == 6
    times = sorted(set(Sample.objects.values_list("ts", flat=True)))
    assert times == [start + timedelta(seconds=s) for s in (0, 10, 20)]


def test_unix_seconds_are_accepted_as_timestamps(client, agent):
    ts = int(timezone.now().timestamp()) - 60

    post(client, agent, {"batch_id": "u", "samples": [{"ts": ts, "metrics": {"x": 1}}]})

    assert Sample.objects.get().ts == datetime.fromtimestamp(ts, tz=UTC)


def test_a_retried_batch_is_stored_once(client, agent):
    body = batch(4)

    first, retry = post(client, agent, body), post(client, agent, body)

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert Sample.objects.count() == 8
    assert IngestBatch.objects.count() == 1


def test_the_same_batch_id_from_another_device_is_its_own(client, make_agent):
    one, two = make_agent("pi-1"), make_agent("pi-2")

    post(client, one, batch(1))
    response = post(client, two, batch(1))

    assert response.status_code == 201
    assert Sample.objects.count() == 4


def test_latest_values_follow_the_newest_sample_not_the_newest_upload(client, agent):
    now = timezone.now()
    post(client, agent, one(now, {"t": 2}, batch_id="new"))
    post(client, agent, one(now - timedelta(minutes=1), {"t": 1}, batch_id="old"))

    assert LatestValue.objects.get().value == 2.0


def test_a_device_cannot_write_as_another(client, make_agent):
    mine, _ = make_agent("pi-1"), make_agent("pi-2")

    response = post(client, mine, {**FLAT, "device_id": "pi-2"})
    batched = post(client, mine, {**batch(), "device_id": "pi-2"})

    assert (response.status_code, batched.status_code) == (403, 403)
    assert not Sample.objects.exists()


def test_ingest_needs_a_device_key(client, agent):
    assert client.post(URL, FLAT, format="json").status_code == 401


NOW = datetime.now(UTC)


def one(ts: datetime | str = NOW, metrics: dict | None = None, batch_id="b", **extra) -> dict:
    """A batch of one sample."""
    stamp = ts.isoformat() if isinstance(ts, datetime) else ts
    sample = {"ts": stamp, "metrics": {"a": 1} if metrics is None else metrics, **extra}
    return {"batch_id": batch_id, "samples": [sample]}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"cpu_percent": "12"}, ["cpu_percent"]),
        ({"cpu_percent": True}, ["cpu_percent"]),
        ({"cpu_percent": None}, ["cpu_percent"]),
        ('{"cpu_percent": NaN}', ["cpu_percent"]),
        ('{"memory_percent": Infinity}', ["memory_percent"]),
        ('{"disk_percent": 1e999}', ["disk_percent"]),
        ({"extra_metrics": {"bad name!": 1}}, ["extra_metrics", "bad name!"]),
        ({"extra_metrics": {"ok": "1"}}, ["extra_metrics", "ok"]),
        ({"extra_metrics": [1]}, ["extra_metrics"]),
        ({"fan_rpm": 1200}, ["fan_rpm"]),
        ({"timestamp": "yesterday"}, ["timestamp"]),
        ({"batch_id": "b", "samples": []}, ["samples"]),
        ({"samples": [{"ts": NOW.isoformat(), "metrics": {"a": 1}}]}, ["batch_id"]),
        (one(metrics={"a": "x"}), ["samples", "0", "metrics", "a"]),
        (one(NOW + timedelta(hours=1)), ["samples", "0", "ts"]),
        (one(NOW - timedelta(days=365)), ["samples", "0", "ts"]),
        (one("2026-11-23T10:00:00"), ["samples", "0", "ts"]),
        (one(x=1), ["samples", "0", "x"]),
        ({"batch_id": "b", "samples": [7]}, ["samples", "0"]),
        (one(batch_id="not ok"), ["batch_id"]),
    ],
)
def test_invalid_telemetry_is_400_naming_the_field_and_stores_nothing(client, agent, body, path):
    response = post(client, agent, body)

    assert response.status_code == 400, response.content
    error = response.json()
    for key in path:
        assert key in error, (path, error)
        error = error[key]
    assert not Sample.objects.exists()
    assert not IngestBatch.objects.exists()


def test_limits_on_samples_and_metrics(client, agent, settings):
    settings.TELEMETRY_MAX_SAMPLES_PER_BATCH = 3
    settings.TELEMETRY_MAX_METRICS_PER_SAMPLE = 2

    too_many_samples = post(client, agent, batch(4))
    too_many_metrics = post(client, agent, batch(1, a=1, b=2, c=3))

    assert "samples" in too_many_samples.json()
    assert "metrics" in too_many_metrics.json()["samples"]["0"]
    assert not Sample.objects.exists()


def test_an_oversized_body_is_413(client, agent, settings):
    settings.TELEMETRY_MAX_BODY_BYTES = 2048

    response = post(client, agent, batch(60))

    assert response.status_code == 413
    assert not Sample.objects.exists()


def test_a_body_that_is_not_an_object_is_400(client, agent):
    assert post(client, agent, "[1, 2]").status_code == 400
    assert post(client, agent, "{not json").status_code == 400
