"""Metric names: the pattern is matched in full, a device has a bounded number
of them, and GET /api/v1/metrics/names is paginated like every other list."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import LatestValue, MetricName, Sample

INGEST = "/api/v1/analytics/device-metrics"
NAMES = "/api/v1/metrics/names"


def post_batch(client, agent, names, batch_id="b-1"):
    sample = {"ts": timezone.now().isoformat(), "metrics": {name: 1.0 for name in names}}
    body = {"batch_id": batch_id, "samples": [sample]}
    return client.post(INGEST, json.dumps(body), content_type="application/json", **agent.headers)


# --- the pattern, in full --------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu\n", "cpu\r\n", "1cpu", "cpu temp", "x" * 101, ""])
def test_a_name_not_matching_the_pattern_in_full_is_400(client, agent, name):
    response = post_batch(client, agent, [name])

    assert response.status_code == 400
    assert name in response.json()["samples"]["0"]["metrics"]
    assert not MetricName.objects.exists()


def test_extra_metrics_of_the_flat_payload_full_match_too(client, agent):
    body = {"cpu_percent": 1.0, "extra_metrics": {"fan\n": 2.0}}

    response = client.post(INGEST, body, format="json", **agent.headers)

    assert response.status_code == 400
    assert "fan\n" in response.json()["extra_metrics"]
    assert not Sample.objects.exists()


# --- at most TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE names per device ----------------------


def test_a_batch_beyond_the_devices_name_limit_is_400_with_a_code(client, agent, settings):
    settings.TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE = 5
    assert post_batch(client, agent, ["a", "b", "c"]).status_code == 201

    response = post_batch(client, agent, ["a", "d", "e", "f"], batch_id="b-2")

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_metric_names"
    assert "5" in response.json()["detail"]
    # nothing of the refused batch is stored, not even the new names
    assert set(MetricName.objects.values_list("name", flat=True)) == {"a", "b", "c"}
    assert Sample.objects.count() == 3


def test_names_a_device_already_has_are_always_accepted(client, agent, settings):
    settings.TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE = 3
    assert post_batch(client, agent, ["a", "b", "c"]).status_code == 201

    assert post_batch(client, agent, ["c", "a"], batch_id="b-2").status_code == 201
    assert post_batch(client, agent, ["b", "d"], batch_id="b-3").status_code == 400


def test_the_limit_is_per_device(client, make_agent, settings):
    settings.TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE = 2
    one, two = make_agent("pi-1"), make_agent("pi-2")
    assert post_batch(client, one, ["a", "b"]).status_code == 201
    client.credentials()

    assert post_batch(client, two, ["c", "d"]).status_code == 201
    assert post_batch(client, one, ["c"], batch_id="b-2").status_code == 400


def test_forty_thousand_names_in_one_batch_are_refused(client, agent, settings):
    settings.TELEMETRY_MAX_METRICS_PER_SAMPLE = 50_000
    settings.TELEMETRY_MAX_BODY_BYTES = 10_000_000

    response = post_batch(client, agent, [f"m{i}" for i in range(40_000)])

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_metric_names"
    assert not MetricName.objects.exists()


def test_known_names_cost_no_extra_query(client, agent, django_capture_on_commit_callbacks):
    """The limit must not slow ingest: names a device is known to have are
    checked in memory, without reading its names again."""
    with django_capture_on_commit_callbacks(execute=True):
        assert post_batch(client, agent, ["a", "b"]).status_code == 201

    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert post_batch(client, agent, ["b", "a"], batch_id="b-2").status_code == 201

    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if "analytics_latestvalue" in sql], reads


# --- GET /api/v1/metrics/names: paginated ---------------------------------------------


@pytest.fixture
def many_names(client, agent):
    assert post_batch(client, agent, [f"m{i:03}" for i in range(120)]).status_code == 201
    client.credentials()


def test_metric_names_are_paginated(client, viewer, many_names):
    client.force_authenticate(viewer)

    first = client.get(NAMES).json()
    last = client.get(NAMES, {"page": 3}).json()

    assert first["count"] == 120
    assert first["results"] == [f"m{i:03}" for i in range(50)]
    assert first["next"] and first["previous"] is None
    assert last["results"] == [f"m{i:03}" for i in range(100, 120)]
    assert last["next"] is None


def test_one_devices_metric_names_are_paginated(client, viewer, many_names, make_agent):
    other = make_agent("pi-2")
    assert post_batch(client, other, ["zz"]).status_code == 201
    client.force_authenticate(viewer)

    body = client.get(NAMES, {"device": "pi-1", "page_size": 100}).json()

    assert body["count"] == 120
    assert len(body["results"]) == 100
    assert "zz" not in body["results"]


def test_a_page_past_the_end_is_404_json(client, viewer, many_names):
    client.force_authenticate(viewer)

    response = client.get(NAMES, {"page": 99})

    assert response.status_code == 404
    assert "detail" in response.json()
    assert LatestValue.objects.count() == 120
