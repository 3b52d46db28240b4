"""POST /api/v1/analytics/thermal-frames and GET /api/v1/devices/{device_id}/thermal/latest"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import LatestValue, ThermalFrame

URL = "/api/v1/analytics/thermal-frames"


def frame(offset: float = 0.0, ts=None) -> dict:
    values = [20.0 + offset + (i % 32) * 0.5 for i in range(768)]
    body = {"values": values}
    if ts is not None:
        body["ts"] = ts.isoformat()
    return body


def post(client, agent, body):
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post(URL, raw, content_type="application/json", **agent.headers)


def test_a_frame_is_stored_with_its_summary_as_metrics(client, agent, viewer):
    response = post(client, agent, frame())

    assert response.status_code == 201
    body = response.json()
    assert (body["width"], body["height"], body["min"], body["max"]) == (32, 24, 20.0, 35.5)
    latest = dict(LatestValue.objects.values_list("metric__name", "value"))
    assert latest == {
        "thermal.min": 20.0,
        "thermal.max": 35.5,
        "thermal.mean": pytest.approx(27.75),
    }
    client.force_authenticate(viewer)
    shown = client.get("/api/v1/devices/pi-1/thermal/latest").json()
    assert shown["values"] == frame()["values"]


def test_only_the_newest_frames_are_kept(client, agent, viewer, settings):
    settings.THERMAL_FRAMES_KEPT = 2
    now = timezone.now()
    for i in range(4):
        post(client, agent, frame(offset=i, ts=now - timedelta(seconds=10 * (3 - i))))

    assert ThermalFrame.objects.count() == 2
    client.force_authenticate(viewer)
    assert client.get("/api/v1/devices/pi-1/thermal/latest").json()["min"] == 23.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"values": [1.0] * 767}, "values"),
        ({"values": [1.0] * 6, "width": 3, "height": 3}, "values"),
        ({"values": ["hot"] * 768}, "values"),
        ('{"values": [' + ", ".join(["NaN"] * 768) + "]}", "values"),
        ({"values": [1.0] * 768, "ts": "later"}, "ts"),
        ({"values": [1.0] * 768, "palette": "iron"}, "palette"),
    ],
)
def test_bad_frames_are_400(client, agent, body, field):
    response = post(client, agent, body)

    assert response.status_code == 400
    assert field in response.json()
    assert not ThermalFrame.objects.exists()


def test_no_frame_yet_is_404(client, viewer, agent):
    client.force_authenticate(viewer)

    assert client.get("/api/v1/devices/pi-1/thermal/latest").status_code == 404
