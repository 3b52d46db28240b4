"""A lab monitor's device page: environment/voltage/current charts, the PSU state
with set/on/off controls, the live thermal frame, and the ARP update form."""

import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from analytics import services
from commands.models import Command
from devices.auth import DeviceIdentity

LAB_VALUES = {
    "bme680.temperature": 23.5,
    "bme680.humidity": 41.0,
    "bme680.iaq": 55.0,
    "psu.voltage": 12.01,
    "psu.current": 0.42,
    "psu.output": 1.0,
    "psu.voltage_set": 12.0,
    "adc.supply_voltage": 11.98,
    "adc.board_current": 0.41,
}


@pytest.fixture
def lab(make_agent):
    return make_agent("lab-1", device_type="lab_monitor")


def identity_of(agent) -> DeviceIdentity:
    device = agent.device
    return DeviceIdentity(device.pk, device.public_id, device.site_id, 0)


def report(agent, values: dict) -> None:
    now = timezone.now()
    samples = [(now - timedelta(minutes=m), values) for m in range(5)]
    services.telemetry_ingest(identity=identity_of(agent), samples=samples)


def store_frame(agent, hot_index: int = 5 * 32 + 7) -> None:
    values = [20.0] * 768
    values[hot_index] = 38.5
    services.thermal_frame_store(
        identity=identity_of(agent), ts=timezone.now(), width=32, height=24, values=values
    )


def browser_for(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def page(browser, agent) -> str:
    response = browser.get(f"/admin/devices/device/{agent.device.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def section(html: str, element_id: str) -> str:
    return html.split(f'id="{element_id}"')[1].split("</fieldset>")[0]


def test_a_lab_monitor_page_charts_environment_voltage_and_current(lab, viewer):
    report(lab, LAB_VALUES)

    panel = section(page(browser_for(viewer), lab), "homepot-lab")

    titles = re.findall(r"<text [^>]*class=\"title plot_title\">([^<]+)</text>", panel)
    assert titles == [
        "bme680.temperature",
        "bme680.humidity",
        "bme680.iaq",
        "psu.voltage",
        "adc.supply_voltage",
        "psu.current",
        "adc.board_current",
    ]
    psu = dict(re.findall(r'<td>(psu\.\w+)</td><td class="homepot-psu-value">([\d.]+)</td>', panel))
    assert psu == {
        "psu.output": "1",
        "psu.voltage": "12.010",
        "psu.current": "0.420",
        "psu.voltage_set": "12",
    }


def test_the_latest_thermal_frame_shows_its_scale_and_hot_spot_and_polls_live(lab, viewer):
    store_frame(lab, hot_index=5 * 32 + 7)

    html = page(browser_for(viewer), lab)

    panel = section(html, "homepot-lab")
    heatmap = panel.split('class="homepot-heatmap"')[1].split("</svg>")[0]
    assert heatmap.count("<rect ") == 768
    assert html.count('class="homepot-heatmap"') == 1  # the lab panel's, not the charts' too
    hotspot = re.search(r'class="homepot-hotspot" cx="([\d.]+)" cy="([\d.]+)"', heatmap)
    assert hotspot.groups() == ("90.0", "66.0")  # column 7, row 5 of 12-pixel cells
    assert "20.0 °C" in panel.split('class="homepot-thermal-scale"')[1]
    assert "38.5 °C" in panel.split('class="homepot-thermal-scale"')[1]
    assert 'data-url="/api/v1/devices/lab-1/thermal/latest?live=true"' in panel
    # the live view is a static file: the admin's policy allows no inline script
    script = re.search(r'<script src="([^"]+thermal_live\.js)"', html)
    assert script and finders.find("analytics/thermal_live.js")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_the_views_poll_holds_the_devices_live_lease(lab, viewer, client):
    store_frame(lab)
    browser = browser_for(viewer)

    polled = browser.get("/api/v1/devices/lab-1/thermal/latest?live=true")

    assert polled.status_code == 200 and len(polled.json()["values"]) == 768
    pending = client.get("/api/v1/devices/pending", **lab.headers)
    assert pending["X-Thermal-Interval"] == "0.25"


def test_other_devices_have_no_lab_panel(agent, viewer):
    html = page(browser_for(viewer), agent)

    assert 'id="homepot-lab"' not in html
    assert 'id="homepot-lab-controls"' not in html


def test_viewers_see_no_controls_and_cannot_queue(lab, viewer):
    browser = browser_for(viewer)
    assert 'id="homepot-lab-controls"' not in page(browser, lab)

    response = browser.post(
        f"/admin/commands/command/lab/{lab.device.pk}/queue/",
        {"lab_command": "psu_output_on"},
    )

    assert response.status_code == 403
    assert not Command.objects.exists()


def queue(browser, lab, **fields):
    return browser.post(f"/admin/commands/command/lab/{lab.device.pk}/queue/", fields, follow=True)


def test_an_operator_sets_the_psu_from_the_device_page(lab, operator):
    browser = browser_for(operator)
    controls = section(page(browser, lab), "homepot-lab-controls")
    assert f'formaction="/admin/commands/command/lab/{lab.device.pk}/queue/"' in controls

    response = queue(browser, lab, lab_command="psu_set", lab_voltage="5", lab_current="")

    assert response.redirect_chain[-1][0] == f"/admin/devices/device/{lab.device.pk}/change/"
    command = Command.objects.get()
    assert (command.command_type, command.payload) == ("psu_set", {"voltage": 5.0})
    assert command.created_by == operator
    assert "Queued psu_set" in response.content.decode()


@pytest.mark.parametrize(
    ("control", "enabled"), [("psu_output_on", True), ("psu_output_off", False)]
)
def test_an_operator_switches_the_psu_output(lab, operator, control, enabled):
    queue(browser_for(operator), lab, lab_command=control)

    command = Command.objects.get()
    assert (command.command_type, command.payload) == ("psu_output", {"enabled": enabled})


def test_an_operator_queues_an_arp_update(lab, operator):
    fields = {"lab_ip": "192.168.1.20", "lab_mac": "aa:bb:cc:dd:ee:ff", "lab_interface": "eth0"}

    queue(browser_for(operator), lab, lab_command="arp_update", **fields)

    command = Command.objects.get()
    assert command.command_type == "arp_update"
    assert command.payload == {
        "ip": "192.168.1.20",
        "mac": "aa:bb:cc:dd:ee:ff",
        "interface": "eth0",
    }


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        (
            {
                "lab_command": "arp_update",
                "lab_ip": "10.0.0.1",
                "lab_mac": "nope",
                "lab_interface": "eth0",
            },
            "mac",
        ),
        ({"lab_command": "psu_set", "lab_voltage": "-1"}, "voltage"),
        ({"lab_command": "psu_set", "lab_voltage": "lots"}, "voltage"),
        ({"lab_command": "rm_rf"}, "Unknown lab control"),
    ],
)
def test_bad_control_input_queues_nothing_and_says_why(lab, operator, fields, complaint):
    response = queue(browser_for(operator), lab, **fields)

    assert response.status_code == 200
    assert complaint in response.content.decode()
    assert not Command.objects.exists()
