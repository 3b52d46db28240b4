"""A lab monitor's thermal view, in a real Chromium: a frame the device sends
after the page opened appears on that page without a reload."""

import json

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from analytics import services
from devices.auth import DeviceIdentity
from tests.browser.conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PIXELS = 32 * 24


def frame_values(hottest: float) -> list[float]:
    values = [20.0 + (i % 5) * 0.1 for i in range(PIXELS)]
    values[5 * 32 + 7] = hottest
    return values


@pytest.fixture
def lab(make_agent):
    return make_agent("lab-1", device_type="lab_monitor")


def test_a_new_frame_from_the_device_replaces_the_shown_one(
    watched_page: Page, live_server, lab, operator
):
    device = lab.device
    identity = DeviceIdentity(device.pk, device.public_id, device.site_id, 0)
    services.thermal_frame_store(
        identity=identity, ts=timezone.now(), width=32, height=24, values=frame_values(38.5)
    )
    admin_login(watched_page, operator, next_path=f"/admin/devices/device/{device.pk}/change/")
    view = watched_page.locator("#homepot-thermal-live")
    expect(view.locator("svg").first).to_be_visible()
    expect(view).to_contain_text("38.5")

    # The device sends its next frame over HTTP, as the agent's thermal collector does.
    response = requests.post(
        live_server.url + "/api/v1/analytics/thermal-frames",
        data=json.dumps({"values": frame_values(45.5)}),
        headers={
            "Content-Type": "application/json",
            "X-Device-Id": device.public_id,
            "X-Api-Key": lab.api_key,
        },
        timeout=10,
    )
    assert response.status_code < 300, response.text

    # The page polls: the new frame's maximum shows up, the old one is gone.
    expect(view).to_contain_text("max 45.5 °C", timeout=10_000)
    expect(view).not_to_contain_text("38.5")
    expect(view.locator(".homepot-hotspot")).to_have_count(1)
