"""The device page as a console: header, range picker, site chart, command forms,
live fragments, same-origin assets and a constant query count."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import services as analytics_services
from analytics.device_charts import RANGES
from commands.models import Command
from commands.services import CommandSpec, command_enqueue
from devices.auth import DeviceIdentity
from devices.models import AuditEntry, Device


def identity_of(device: Device) -> DeviceIdentity:
    return DeviceIdentity(device.pk, device.public_id, device.site_id, 0)


def report(device: Device, values: dict, minutes: int = 5, every: int = 1) -> None:
    now = timezone.now()
    samples = [(now - timedelta(minutes=m), values) for m in range(0, minutes, every)]
    analytics_services.telemetry_ingest(identity=identity_of(device), samples=samples)


def browser_for(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def page_url(device: Device, query: str = "") -> str:
    return f"/admin/devices/device/{device.pk}/change/{query}"


def page(browser: Client, device: Device, query: str = "") -> str:
    response = browser.get(page_url(device, query))
    assert response.status_code == 200
    return response.content.decode()


def section(html: str, element_id: str) -> str:
    return html.split(f'id="{element_id}"')[1].split("</fieldset>")[0]


def queue(browser: Client, device: Device, command_type: str, **fields: str):
    data = {"homepot_command": command_type}
    data.update({f"{command_type}-{name}": value for name, value in fields.items()})
    return browser.post(f"/admin/commands/command/device/{device.pk}/queue/", data, follow=True)


def page_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def operator_browser(operator) -> Client:
    return browser_for(operator)


@pytest.fixture
def pi(make_agent) -> Device:
    """A device whose agent reports what it allows (heartbeat attributes)."""
    device = make_agent("pi-1").device
    device.attributes = {
        "allowed_commands": [
            "ping",
            "reboot",
            "restart_service",
            "stop_service",
            "start_service",
            "service_status",
            "list_services",
            "update_config",
            "psu_set",
            "psu_output",
            "arp_update",
        ],
        "allowed_services": ["nginx.service", "homepot-agent"],
    }
    device.save(update_fields=["attributes"])
    return device


# --- Header ----------------------------------------------------------------------------------


def test_the_header_shows_status_identity_and_key_age(viewer, pi):
    header = section(page(browser_for(viewer), pi), "homepot-device-header")

    assert "pi-1" in header
    assert "lab-1" in header  # the site
    assert pi.get_status_display() in header
    assert "issued" in header.split('class="homepot-key-age"')[1]


def test_the_key_age_is_none_once_every_key_is_revoked(viewer, pi):
    pi.credentials.update(revoked_at=timezone.now())

    header = section(page(browser_for(viewer), pi), "homepot-device-header")

    assert "no usable key" in header


def test_latest_values_carry_their_units(viewer, pi):
    report(pi, {"cpu_percent": 12.5, "bme680.temperature": 21.0, "fan_rpm": 900.0})

    html = section(page(browser_for(viewer), pi), "homepot-telemetry")

    units = dict(
        re.findall(
            r"<td>([\w.]+)</td><td class=\"homepot-latest\">[\d.]+</td><td>([^<]*)</td>", html
        )
    )
    assert units == {"bme680.temperature": "°C", "cpu_percent": "%", "fan_rpm": "rpm"}


# --- Range picker ----------------------------------------------------------------------------


def api_resolution(client, viewer, start: datetime, end: datetime, step: int) -> str:
    client.force_authenticate(viewer)
    params = {"name": "cpu_percent", "start": start.isoformat(), "end": end.isoformat()}
    response = client.get("/api/v1/devices/pi-1/metrics", {**params, "step": step})
    assert response.status_code == 200, response.content
    return response.json()["resolution"]


def page_resolution(html: str) -> str:
    return re.search(r'class="homepot-resolution">([^<]+)<', html).group(1)


@pytest.mark.parametrize(
    ("range_name", "wanted"),
    [("1h", "raw"), ("6h", "1m"), ("24h", "1m"), ("7d", "1h"), ("30d", "1h")],
)
def test_the_range_picker_reads_what_the_api_reads_for_that_step(
    client, viewer, pi, range_name, wanted
):
    report(pi, {"cpu_percent": 5.0})
    seconds, step = RANGES[range_name]
    now = timezone.now()

    html = page(browser_for(viewer), pi, f"?range={range_name}")

    assert page_resolution(html) == wanted
    assert api_resolution(client, viewer, now - timedelta(seconds=seconds), now, step) == wanted
    assert 'aria-current="true">' + range_name in html


def test_a_custom_range_picks_a_step_by_its_length(viewer, pi):
    report(pi, {"cpu_percent": 5.0})
    now = datetime.now(tz=UTC)
    short = {"range": "custom", "start": f"{now - timedelta(minutes=30):%Y-%m-%dT%H:%M}"}
    short["end"] = f"{now:%Y-%m-%dT%H:%M}"
    long = {**short, "start": f"{now - timedelta(days=20):%Y-%m-%dT%H:%M}"}

    assert page_resolution(page(browser_for(viewer), pi, "?" + urlencode(short))) == "raw"
    assert page_resolution(page(browser_for(viewer), pi, "?" + urlencode(long))) == "1h"


@pytest.mark.parametrize(
    "query",
    [
        {"range": "custom", "start": "yesterday", "end": "now"},
        {"range": "custom", "start": "2026-01-02T00:00", "end": "2026-01-01T00:00"},
        {"range": "custom", "start": "1990-01-01T00:00", "end": "2026-01-01T00:00"},
        {"range": "forever"},
    ],
)
def test_a_bad_range_falls_back_to_a_day_with_a_reason(viewer, pi, query):
    report(pi, {"cpu_percent": 5.0})

    html = page(browser_for(viewer), pi, "?" + urlencode(query))

    assert page_resolution(html) == "1m"  # the 24 h default
    if query["range"] == "custom":
        assert 'class="errornote"' in section(html, "homepot-telemetry")


def x_labels(svg: str) -> list[str]:
    axis = svg.split('class="axis x')[1].split('class="axis y')[0]
    return re.findall(r"<text[^>]*>([^<]+)</text>", axis)


@pytest.mark.parametrize("range_name", ["24h", "7d", "30d"])
def test_time_labels_do_not_repeat(viewer, pi, range_name):
    report(pi, {"cpu_percent": 5.0})

    html = page(browser_for(viewer), pi, f"?range={range_name}")
    chart = html.split('data-metric="cpu_percent"')[1].split("</svg>")[0]

    site_chart = html.split('id="homepot-site-chart"')[1].split('class="legends"')[0]

    labels = [label for label in x_labels(chart) if label != "UTC"]
    assert len(labels) >= 3
    assert len(labels) == len(set(labels))
    assert [label for label in x_labels(site_chart) if label != "UTC"] == labels


# --- Site chart ------------------------------------------------------------------------------


def test_the_site_chart_has_every_device_of_the_site_with_that_metric(
    viewer, pi, make_agent, other_site
):
    report(pi, {"cpu_percent": 5.0})
    report(make_agent("pi-2").device, {"cpu_percent": 50.0})
    report(make_agent("pi-3").device, {"fan_rpm": 900.0})  # same site, another metric
    report(make_agent("far-1", site_public_id="lab-2").device, {"cpu_percent": 7.0})

    html = page(browser_for(viewer), pi, "?site_metric=cpu_percent")
    site_chart = html.split('id="homepot-site-chart"')[1].split("</svg>")[0]

    legend = set(re.findall(r'class="legends".*', site_chart, re.S)[0].split("<text")[1:])
    names = {re.search(r">([^<]+)<", item).group(1) for item in legend}
    assert names == {"pi-1", "pi-2"}


# --- Command forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command_type", "fields", "payload"),
    [
        ("ping", {}, {}),
        ("reboot", {}, {}),
        ("list_services", {}, {}),
        ("restart_service", {"service": "nginx.service"}, {"service": "nginx.service"}),
        ("stop_service", {"service": "homepot-agent"}, {"service": "homepot-agent"}),
        ("start_service", {"service": "nginx.service"}, {"service": "nginx.service"}),
        ("service_status", {"service": "nginx.service"}, {"service": "nginx.service"}),
        ("psu_set", {"voltage": "12.5", "current": ""}, {"voltage": 12.5}),
        ("psu_output", {"enabled": "off"}, {"enabled": False}),
        (
            "arp_update",
            {"ip": "10.0.0.7", "mac": "aa:bb:cc:dd:ee:ff", "interface": "eth0"},
            {"ip": "10.0.0.7", "mac": "aa:bb:cc:dd:ee:ff", "interface": "eth0"},
        ),
        (
            "update_config",
            {"push_interval": "15", "enabled_collectors": "system, services"},
            {"push_interval": 15, "enabled_collectors": ["system", "services"]},
        ),
    ],
)
def test_each_form_queues_its_command(
    operator_browser, operator, pi, command_type, fields, payload
):
    html = section(page(operator_browser, pi), "homepot-commands")
    assert f'value="{command_type}"' in html  # its button is on the page

    response = queue(operator_browser, pi, command_type, **fields)

    assert response.status_code == 200
    command = Command.objects.get(device=pi)
    assert (command.command_type, command.payload) == (command_type, payload)
    assert command.created_by == operator
    assert AuditEntry.objects.filter(action="command.queue", actor=operator.username).exists()
    assert any(m.startswith("Queued") for m in page_messages(response))


@pytest.mark.parametrize(
    ("command_type", "fields", "wanted"),
    [
        ("restart_service", {"service": "sshd"}, "service"),  # not one the agent allows
        ("restart_service", {}, "service"),
        ("psu_set", {"voltage": "-1"}, "voltage"),
        ("psu_set", {"voltage": "nan"}, "voltage"),
        ("psu_set", {}, "voltage"),
        ("psu_output", {"enabled": "maybe"}, "enabled"),
        ("arp_update", {"ip": "10.0.0.300", "mac": "aa:bb", "interface": "-x"}, "ip"),
        ("arp_update", {"ip": "10.0.0.1", "mac": "aa:bb", "interface": "eth0"}, "mac"),
        ("update_config", {"push_interval": "0"}, "push_interval"),
        ("update_config", {}, "at least one"),
        ("format_disk", {}, "not allowed"),
        ("", {}, "not allowed"),
    ],
)
def test_bad_input_is_refused_with_a_message(operator_browser, pi, command_type, fields, wanted):
    response = queue(operator_browser, pi, command_type, **fields)

    assert response.status_code == 200
    assert not Command.objects.filter(device=pi).exists()
    [message] = page_messages(response)
    assert wanted in message.lower() or wanted in message


def test_a_type_the_agent_does_not_allow_has_no_button_and_is_refused(operator_browser, pi):
    pi.attributes = {"allowed_commands": ["ping"], "allowed_services": ["nginx.service"]}
    pi.save(update_fields=["attributes"])

    html = section(page(operator_browser, pi), "homepot-commands")
    response = queue(operator_browser, pi, "reboot")

    assert 'value="ping"' in html
    assert 'value="reboot"' not in html
    assert not Command.objects.filter(device=pi).exists()
    assert "not allowed" in page_messages(response)[0]


def test_services_come_from_the_services_collector_when_not_reported(operator_browser, make_agent):
    device = make_agent("pi-9").device  # attributes say nothing: agent defaults
    report(device, {"service.nginx.active": 1.0, "service.redis-server.active": 0.0})

    html = section(page(operator_browser, device), "homepot-commands")
    options = re.findall(
        r'<option value="([^"]+)"', html.split('id="homepot-command-restart_service"')[1]
    )

    assert options[:2] == ["nginx", "redis-server"]
    assert 'value="arp_update"' not in html  # opt-in: not offered unless reported
    assert 'value="ping"' in html


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_403(viewer, pi):
    browser = browser_for(viewer)

    html = section(page(browser, pi), "homepot-commands")
    response = queue(browser, pi, "ping")

    assert "homepot_command" not in html
    assert "Queue a command" not in html
    assert response.status_code == 403
    assert not Command.objects.exists()


def test_the_queue_refuses_get_and_anonymous(pi):
    anonymous = Client()
    response = anonymous.post(
        f"/admin/commands/command/device/{pi.pk}/queue/", {"homepot_command": "ping"}
    )

    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not Command.objects.exists()


def test_the_queue_needs_the_csrf_token(operator, pi):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)

    response = browser.post(
        f"/admin/commands/command/device/{pi.pk}/queue/", {"homepot_command": "ping"}
    )

    assert response.status_code == 403
    assert not Command.objects.exists()


# --- Live fragments --------------------------------------------------------------------------


def test_the_commands_fragment_shows_a_new_command(operator_browser, operator, pi):
    html = page(operator_browser, pi)
    url = re.search(r'id="homepot-commands" data-homepot-live-url="([^"]+)"', html).group(1)
    spec = CommandSpec.validated(command_type="reboot", payload={})
    command_enqueue(actor=operator, device=pi, spec=spec)

    fragment = operator_browser.get(url).content.decode()

    latest = fragment.split('id="homepot-commands-latest"')[1]
    assert "reboot" in latest and "queued" in latest


def test_the_telemetry_fragment_keeps_the_range_and_shows_new_values(viewer, pi):
    browser = browser_for(viewer)
    report(pi, {"cpu_percent": 5.0})
    html = page(browser, pi, "?range=7d")
    url = re.search(r'id="homepot-telemetry" data-homepot-live-url="([^"]+)"', html).group(1)
    report(pi, {"cpu_percent": 77.0}, minutes=1)

    fragment = browser.get(url.replace("&amp;", "&")).content.decode()

    assert "range=7d" in url
    assert page_resolution(fragment) == "1h"
    assert re.search(r'<td>cpu_percent</td><td class="homepot-latest">77</td>', fragment)


def test_fragments_are_for_staff_with_the_panels_permission(viewer, pi, django_user_model):
    from django.contrib.auth.models import Permission

    outsider = django_user_model.objects.create_user("dev-only", password="x", is_staff=True)
    outsider.user_permissions.set(Permission.objects.filter(codename="view_device"))
    url = f"/admin/devices/device/{pi.pk}/panel/commands/"

    assert Client().get(url).status_code == 302  # to the login page
    assert browser_for(outsider).get(url).status_code == 404
    assert browser_for(viewer).get(url).status_code == 200
    assert (
        browser_for(viewer).get(f"/admin/devices/device/{pi.pk}/panel/nothing/").status_code == 404
    )


# --- Assets and cost -------------------------------------------------------------------------


def test_every_asset_of_the_page_is_same_origin_and_exists(operator_browser, pi):
    report(pi, {"cpu_percent": 5.0})
    html = page(operator_browser, pi)

    assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", html)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert "/static/analytics/device_page.js" in scripts
    assert finders.find("analytics/device_page.js")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script (CSP)


def test_the_page_costs_the_same_queries_whatever_the_history_and_the_site(
    operator_browser, pi, make_agent
):
    def queries_for_page() -> int:
        page(operator_browser, pi, "?range=24h")  # warm: the session and the user
        with CaptureQueriesContext(connection) as captured:
            page(operator_browser, pi, "?range=24h")
        return len(captured)

    report(pi, {"cpu_percent": 5.0, "memory_percent": 20.0, "service.nginx.active": 1.0})
    few = queries_for_page()
    report(pi, {"cpu_percent": 6.0, "memory_percent": 21.0}, minutes=600, every=2)
    for n in range(5):
        report(make_agent(f"pi-x{n}").device, {"cpu_percent": float(n)}, minutes=60)
    for _ in range(5):
        Command.objects.create(device=pi, command_type="ping", timeout_seconds=60)

    assert queries_for_page() == few


def test_a_lab_monitor_keeps_psu_and_arp_in_its_lab_controls(operator_browser, make_agent):
    lab = make_agent("lab-1", device_type="lab_monitor").device

    html = page(operator_browser, lab)
    commands = section(html, "homepot-commands")
    response = queue(operator_browser, lab, "psu_set", voltage="5")

    assert 'value="ping"' in commands
    assert 'value="psu_set"' not in commands  # one place per control, not two
    assert 'value="psu_set"' in section(html, "homepot-lab-controls")
    assert "not allowed" in page_messages(response)[0]


def test_charts_without_a_single_value_render():
    """A site or device with nothing yet to draw (pygal failed on fixed x labels)."""
    from analytics.charts import metric_chart_svg, site_chart_svg

    end = timezone.now()
    start = end - timedelta(hours=1)

    assert "<svg" in site_chart_svg("temp", {"pi-1": []}, start=start, end=end)
    assert "<svg" in metric_chart_svg("temp", [], start=start, end=end)
