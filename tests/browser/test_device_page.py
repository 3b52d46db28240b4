"""A device's admin page in a real Chromium: the range picker, queueing a ping that
a device (the agent's own transport and executor) runs, and what a viewer sees."""

import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from analytics import services
from devices.auth import DeviceIdentity
from tests.browser.conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_MS = 10_000
RANGE_FORMAT = "%Y-%m-%d %H:%M"


def device_url(agent) -> str:
    return f"/admin/devices/device/{agent.device.pk}/change/"


def report_cpu(agent, hours: int) -> None:
    """A reading every 10 minutes for the last `hours` hours."""
    device = agent.device
    identity = DeviceIdentity(device.pk, device.public_id, device.site_id, 0)
    now = timezone.now()
    samples = [
        (now - timedelta(minutes=10 * n), {"cpu_percent": 10.0 + n % 7}) for n in range(hours * 6)
    ]
    services.telemetry_ingest(identity=identity, samples=samples)


def shown_range(page: Page) -> timedelta:
    """The span the charts say they draw ("2026-11-30 04:00 – 2026-11-30 05:00 UTC · ...")."""
    text = page.locator("#homepot-device-charts .homepot-chart-range").inner_text()
    start, end = (part.strip() for part in text.split("UTC")[0].split("–"))
    return datetime.strptime(end, RANGE_FORMAT) - datetime.strptime(start, RANGE_FORMAT)


def test_the_range_picker_changes_the_charts_range(operator_page: Page, agent):
    report_cpu(agent, hours=30)
    operator_page.goto(device_url(agent))
    expect(
        operator_page.locator('#homepot-device-charts [data-metric="cpu_percent"] svg')
    ).to_be_visible()

    operator_page.locator(".homepot-range-picker a", has_text="1h").click()

    expect(operator_page.locator(".homepot-range-current")).to_have_text("1h")
    assert shown_range(operator_page) == timedelta(hours=1)
    one_hour = operator_page.locator("#homepot-device-charts .homepot-resolution").inner_text()

    operator_page.locator(".homepot-range-picker a", has_text="7d").click()

    expect(operator_page.locator(".homepot-range-current")).to_have_text("7d")
    assert shown_range(operator_page) == timedelta(days=7)
    # A week is drawn from rollups, an hour from the raw samples.
    expect(operator_page.locator("#homepot-device-charts .homepot-resolution")).not_to_have_text(
        one_hour
    )
    expect(
        operator_page.locator('#homepot-device-charts [data-metric="cpu_percent"] svg')
    ).to_be_visible()


def test_a_ping_queued_on_the_device_page_succeeds_on_that_page(
    operator_page: Page, agent, device_loop
):
    operator_page.goto(device_url(agent))

    operator_page.locator('#homepot-command-ping button[value="ping"]').click()

    # Back on the same page; the commands panel follows the command live.
    operator_page.wait_for_url(re.compile(re.escape(device_url(agent)) + "(#.*)?$"))
    row = operator_page.locator("#homepot-commands-latest tr.homepot-command").first
    expect(row).to_contain_text("ping")
    expect(row.locator(".homepot-command-status")).to_have_text("succeeded", timeout=LIVE_MS)
    expect(row).to_contain_text("pong")


def test_a_viewer_sees_the_commands_but_no_button_to_queue_one(
    watched_page: Page, viewer, agent, enqueue
):
    enqueue(agent, "ping")
    admin_login(watched_page, viewer, next_path=device_url(agent))

    expect(watched_page.locator("#homepot-commands-latest")).to_contain_text("ping")
    expect(watched_page.locator("#homepot-commands button")).to_have_count(0)
    expect(watched_page.locator(".homepot-command-form")).to_have_count(0)
