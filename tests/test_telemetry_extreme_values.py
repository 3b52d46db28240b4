"""Extreme telemetry values: refused at the API, harmless once stored.

One device's 1.7e308 (finite, but whose SUM overflows) must never stop the
fleet's rollups, and reads, the admin page and charts of that device must
answer, whatever the database holds."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from analytics import services
from analytics.models import (
    LatestValue,
    MetricName,
    RollupHour,
    RollupMinute,
    Sample,
    ThermalFrame,
)
from devices.auth import DeviceIdentity

INGEST = "/api/v1/analytics/device-metrics"
HOUR0 = (timezone.now() - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
HUGE = 1.7e308


def identity_of(agent) -> DeviceIdentity:
    return DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)


def post_batch(client, agent, metrics: dict) -> object:
    body = {"batch_id": "b-1", "samples": [{"ts": timezone.now().isoformat(), "metrics": metrics}]}
    return client.post(INGEST, json.dumps(body), content_type="application/json", **agent.headers)


def insert_raw(agent, name: str, rows: list[tuple[int, float]]) -> None:
    """Store values as a database could hold them, bypassing the API's bounds."""
    metric = MetricName.objects.get_or_create(name=name)[0]
    Sample.objects.bulk_create(
        [
            Sample(
                device_id=agent.device.pk, metric=metric, ts=HOUR0 + timedelta(seconds=s), value=v
            )
            for s, v in rows
        ]
    )
    newest_offset, newest_value = max(rows)
    LatestValue.objects.update_or_create(
        device_id=agent.device.pk,
        metric=metric,
        defaults={"ts": HOUR0 + timedelta(seconds=newest_offset), "value": newest_value},
    )


# --- the API refuses values beyond the bound ------------------------------------------


@pytest.mark.parametrize("value", [1e16, -1e16, HUGE, -HUGE])
def test_a_value_beyond_the_bound_is_400_naming_the_metric(client, agent, value):
    response = post_batch(client, agent, {"cpu": 1.0, "pressure": value})

    assert response.status_code == 400
    assert "pressure" in response.json()["samples"]["0"]["metrics"]
    assert not Sample.objects.exists()


def test_a_flat_payload_value_beyond_the_bound_is_400_naming_it(client, agent):
    body = {"cpu_percent": 2e15, "extra_metrics": {"fan": 1.0}}

    response = client.post(INGEST, body, format="json", **agent.headers)

    assert response.status_code == 400
    assert "cpu_percent" in response.json()
    assert not Sample.objects.exists()


def test_values_at_the_bound_are_stored(client, agent):
    response = post_batch(client, agent, {"a": 1e15, "b": -1e15})

    assert response.status_code == 201
    assert sorted(Sample.objects.values_list("value", flat=True)) == [-1e15, 1e15]


def test_the_bound_is_a_setting(client, agent, settings):
    settings.TELEMETRY_MAX_ABS_VALUE = 100.0

    assert post_batch(client, agent, {"a": 100.5}).status_code == 400
    assert post_batch(client, agent, {"a": 100.0}).status_code == 201


def test_a_thermal_frame_value_beyond_the_bound_is_400(client, agent):
    body = {"width": 2, "height": 1, "values": [20.0, 1e300]}

    response = client.post("/api/v1/analytics/thermal-frames", body, format="json", **agent.headers)

    assert response.status_code == 400
    assert "values" in response.json()


# --- rollups: one device's stored value cannot stop the others --------------------------


@pytest.fixture
def two_devices(make_agent):
    return make_agent("pi-huge"), make_agent("pi-fine")


def test_a_stored_huge_value_does_not_stop_other_devices_rollups(two_devices):
    huge, fine = two_devices
    # Two in one minute overflow a plain SUM; in two minutes of one hour, the hour's.
    insert_raw(huge, "v", [(0, HUGE), (10, HUGE), (70, HUGE)])
    insert_raw(fine, "v", [(0, 1.0), (20, 2.0), (70, 4.0)])

    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))

    minutes = RollupMinute.objects.filter(device_id=fine.device.pk)
    assert sorted(minutes.values_list("sum", "count")) == [(3.0, 2), (4.0, 1)]
    hour = RollupHour.objects.get(device_id=fine.device.pk)
    assert (hour.min, hour.max, hour.sum, hour.count) == (1.0, 4.0, 7.0, 3)
    # the huge device's buckets are rolled up too, with finite sums
    for row in RollupMinute.objects.filter(device_id=huge.device.pk):
        assert row.count in (1, 2) and abs(row.sum) < float("inf")


def test_stored_infinity_does_not_stop_rollups(two_devices):
    huge, fine = two_devices
    insert_raw(huge, "v", [(0, float("inf")), (10, float("-inf"))])
    insert_raw(fine, "v", [(0, 1.0)])

    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))

    assert RollupMinute.objects.get(device_id=fine.device.pk).sum == 1.0
    assert RollupHour.objects.filter(device_id=fine.device.pk).exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_device_whose_rollup_fails_does_not_hold_back_the_others(two_devices):
    """A real database error for one device's rows (a constraint refusing
    them) fails the fleet-wide statement; the others are rolled up anyway."""
    bad, fine = two_devices
    insert_raw(bad, "v", [(0, 1.0)])
    insert_raw(fine, "v", [(0, 2.0)])
    with connection.cursor() as cursor:  # transactional DDL: rolled back after the test
        cursor.execute(
            f"ALTER TABLE analytics_rollupminute ADD CONSTRAINT refuse_one_device"
            f" CHECK (device_id <> {bad.device.pk})"
        )

    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))

    assert RollupMinute.objects.get(device_id=fine.device.pk).sum == 2.0
    assert not RollupMinute.objects.filter(device_id=bad.device.pk).exists()
    assert RollupHour.objects.get(device_id=fine.device.pk).sum == 2.0


# --- reads, admin page and charts of a device with such values ----------------------------


@pytest.fixture
def stored_extremes(agent):
    insert_raw(agent, "v", [(0, HUGE), (10, HUGE), (20, -HUGE)])
    insert_raw(agent, "w", [(0, float("inf"))])
    services.telemetry_rollup(now=HOUR0 + timedelta(hours=1, minutes=1))
    return agent


@pytest.mark.parametrize("step", [10, 60, 3600])
@pytest.mark.parametrize("agg", ["avg", "sum", "max", "min"])
def test_series_of_extreme_values_answer_json(client, viewer, stored_extremes, step, agg):
    client.force_authenticate(viewer)
    params = {
        "name": "v",
        "start": (HOUR0 - timedelta(hours=1)).isoformat(),
        "end": (HOUR0 + timedelta(hours=2)).isoformat(),
        "step": step,
        "agg": agg,
    }

    response = client.get("/api/v1/devices/pi-1/metrics", params)

    assert response.status_code == 200, response.content
    values = [point["value"] for point in response.json()["points"]]
    assert values  # every value a JSON number or null, never Infinity (invalid JSON)
    assert all(v is None or isinstance(v, float | int) for v in values)


def test_latest_values_of_extreme_values_answer_json(client, viewer, stored_extremes):
    client.force_authenticate(viewer)

    response = client.get("/api/v1/devices/pi-1/metrics/latest")

    assert response.status_code == 200, response.content
    metrics = response.json()["metrics"]
    assert metrics["v"]["value"] == -HUGE  # the newest of v, finite: returned as is
    assert metrics["w"]["value"] is None  # Infinity is not JSON


def test_the_admin_page_and_charts_of_extreme_values_answer(viewer, stored_extremes):
    ThermalFrame.objects.create(
        device_id=stored_extremes.device.pk,
        ts=HOUR0,
        width=2,
        height=1,
        values=[HUGE, -HUGE],
        min=-HUGE,
        max=HUGE,
        mean=0.0,
    )
    browser = Client()
    browser.force_login(viewer)

    response = browser.get(
        f"/admin/devices/device/{stored_extremes.device.pk}/change/?chart=v&chart=w"
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="pygal-chart"') == 2
    assert 'class="homepot-heatmap"' in html
