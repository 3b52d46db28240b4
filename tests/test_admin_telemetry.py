"""The device page in the admin: latest values, 24-hour charts, thermal heatmap."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from analytics import charts, services
from devices.auth import DeviceIdentity


@pytest.fixture
def browser(viewer) -> Client:
    browser = Client()
    browser.force_login(viewer)
    return browser


@pytest.fixture
def identity(agent) -> DeviceIdentity:
    return DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)


def page(browser, agent, query: str = "") -> str:
    response = browser.get(f"/admin/devices/device/{agent.device.pk}/change/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_the_device_page_shows_latest_values_and_default_charts(browser, agent, identity):
    now = timezone.now()
    samples = [
        (now - timedelta(minutes=m), {"cpu_percent": 10.0 + m, "fan_rpm": 900.0}) for m in range(30)
    ]
    services.telemetry_ingest(identity=identity, samples=samples)

    html = page(browser, agent)

    latest = dict(re.findall(r"<td>([\w.]+)</td><td class=\"homepot-latest\">([\d.]+)</td>", html))
    assert latest == {"cpu_percent": "10", "fan_rpm": "900"}
    assert html.count('class="pygal-chart"') == 1  # cpu_percent only
    assert "cpu_percent" in html
    panel = html.split('id="homepot-telemetry"')[1].split("</fieldset>")[0]
    # nothing loaded from elsewhere: lab networks are often offline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", panel)


def test_charts_follow_the_operators_choice(browser, agent, identity):
    services.telemetry_ingest(
        identity=identity, samples=[(timezone.now(), {"cpu_percent": 1.0, "fan_rpm": 2.0})]
    )

    html = page(browser, agent, "?chart=fan_rpm&chart=cpu_percent&chart=unknown")

    assert html.count('class="pygal-chart"') == 2


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "values", [[11.98, 11.979999999999999, 11.98], [5.0, 5.0], [1e12, 1e12 + 1e-3]]
)
def test_a_chart_of_values_that_differ_only_by_float_noise_renders(values):
    # pygal's y scale stepped below one float ulp and never finished (a CI hang).
    now = timezone.now()
    points = [{"ts": now - timedelta(minutes=n), "value": v} for n, v in enumerate(values)]

    svg = charts.metric_chart_svg("psu.voltage", points)

    assert 'class="pygal-chart"' in svg
    assert svg.count("<path") >= 1


def test_the_latest_thermal_frame_is_drawn_as_a_heatmap(browser, agent, identity):
    values = [20.0 + (i % 32) for i in range(768)]
    services.thermal_frame_store(
        identity=identity, ts=timezone.now(), width=32, height=24, values=values
    )

    html = page(browser, agent)

    heatmap = html.split('class="homepot-heatmap"')[1].split("</svg>")[0]
    assert heatmap.count("<rect ") == 768
    assert "max 51.0 °C" in heatmap


def test_a_device_without_telemetry_says_so(browser, agent):
    assert "No telemetry from this device yet." in page(browser, agent)
