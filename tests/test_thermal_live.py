"""The live thermal lease: while an operator's thermal view polls the newest frame
(GET /api/v1/devices/{device_id}/thermal/latest?live=true), the device's own
responses advise it to send frames fast; after the view closes the lease runs out.

Driven with HTTP requests that read the headers (the agent's thermal collector
is another helper's part), and with a small device loop that sends frames at
whatever interval the server advises, to show the rate itself rise and fall.
"""

import json
import time

import pytest

from analytics.models import ThermalFrame

FRAME = json.dumps({"values": [21.0 + (i % 7) for i in range(768)]})
DEVICE_CALLS = [
    ("get", "/api/v1/devices/pending", None),
    ("post", "/api/v1/devices/heartbeat", "{}"),
    ("post", "/api/v1/analytics/device-metrics", json.dumps({"cpu_percent": 3.0})),
    ("post", "/api/v1/analytics/thermal-frames", FRAME),
]


def device_call(client, agent, method: str, path: str, body: str | None):
    if body is None:
        return getattr(client, method)(path, **agent.headers)
    return getattr(client, method)(path, body, content_type="application/json", **agent.headers)


def watch(client, viewer, device_id: str = "pi-1"):
    client.force_authenticate(viewer)
    response = client.get(f"/api/v1/devices/{device_id}/thermal/latest?live=true")
    client.force_authenticate(None)
    return response


@pytest.mark.parametrize(("method", "path", "body"), DEVICE_CALLS)
def test_no_thermal_headers_while_nobody_watches(client, agent, method, path, body):
    response = device_call(client, agent, method, path, body)

    assert response.status_code < 300
    assert "X-Thermal-Interval" not in response
    assert "X-Thermal-Lease" not in response


@pytest.mark.parametrize(("method", "path", "body"), DEVICE_CALLS)
def test_a_watched_device_is_told_to_send_frames_fast(
    client, agent, viewer, settings, method, path, body
):
    settings.THERMAL_LIVE_LEASE_SECONDS = 20
    settings.THERMAL_LIVE_INTERVAL_SECONDS = 0.25
    device_call(client, agent, *DEVICE_CALLS[0])  # remembers "no lease" in this process
    assert watch(client, viewer).status_code == 404  # no frame yet: the lease starts anyway

    response = device_call(client, agent, method, path, body)

    assert response.status_code < 300
    assert response["X-Thermal-Interval"] == "0.25"
    assert 18 <= float(response["X-Thermal-Lease"]) <= 20
    assert float(response["X-Poll-Interval"]) <= settings.THERMAL_LIVE_POLL_SECONDS


def test_reading_the_latest_frame_without_live_starts_no_lease(client, agent, viewer):
    device_call(client, agent, *DEVICE_CALLS[3])
    client.force_authenticate(viewer)
    assert client.get("/api/v1/devices/pi-1/thermal/latest").status_code == 200
    client.force_authenticate(None)

    assert "X-Thermal-Interval" not in device_call(client, agent, *DEVICE_CALLS[0])


def test_only_the_watched_device_is_told(client, agent, make_agent, viewer):
    other = make_agent("pi-2")
    watch(client, viewer, "pi-1")

    assert "X-Thermal-Interval" in device_call(client, agent, *DEVICE_CALLS[0])
    assert "X-Thermal-Interval" not in device_call(client, other, *DEVICE_CALLS[0])


def test_the_lease_runs_out_after_the_view_closes_and_a_poll_renews_it(
    client, agent, viewer, settings
):
    settings.THERMAL_LIVE_LEASE_SECONDS = 2
    watch(client, viewer)
    assert "X-Thermal-Interval" in device_call(client, agent, *DEVICE_CALLS[0])
    time.sleep(1.2)
    watch(client, viewer)  # still open: renewed
    time.sleep(1.2)
    assert "X-Thermal-Interval" in device_call(client, agent, *DEVICE_CALLS[0])

    time.sleep(2.1)  # closed: no more polls

    assert "X-Thermal-Interval" not in device_call(client, agent, *DEVICE_CALLS[0])


def test_an_unknown_device_is_404_and_starts_nothing(client, viewer):
    client.force_authenticate(viewer)
    assert client.get("/api/v1/devices/nope/thermal/latest?live=true").status_code == 404


class FrameSender:
    """A device that sends a frame every `slow` seconds unless told otherwise."""

    def __init__(self, client, agent, slow: float) -> None:
        self.client, self.agent, self.slow = client, agent, slow
        self.interval, self.fast_until = slow, 0.0

    def run(self, seconds: float) -> int:
        sent, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            response = device_call(self.client, self.agent, *DEVICE_CALLS[3])
            sent += 1
            self._listen(response)
            time.sleep(self.interval if time.monotonic() < self.fast_until else self.slow)
        return sent

    def _listen(self, response) -> None:
        if "X-Thermal-Interval" in response:
            self.interval = float(response["X-Thermal-Interval"])
            self.fast_until = time.monotonic() + float(response["X-Thermal-Lease"])


def test_the_frame_rate_rises_while_the_view_is_open_and_falls_back_after(
    client, agent, viewer, settings
):
    settings.THERMAL_LIVE_LEASE_SECONDS = 2
    device = FrameSender(client, agent, slow=1.0)
    before = device.run(2.0)
    watch(client, viewer)
    during = device.run(1.5)
    time.sleep(2.1)  # the view closed: the lease runs out
    device.run(1.0)  # hears of it
    after = device.run(2.0)

    assert before <= 2
    assert during >= 5  # ~4 per second
    assert after <= 3
    assert ThermalFrame.objects.filter(device=agent.device).exists()
