"""The fleet dashboard (/admin/) in a real Chromium: its cards agree with the API,
and a device that stops checking in turns offline on the open page, with a toast."""

import time
from datetime import timedelta

import pytest
import requests
from playwright.sync_api import Page, expect

from devices.models import Device
from homepot import celery_app

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The bound: a change shows on an open dashboard within 10 s.
LIVE_MS = 10_000


def heartbeat(base_url: str, agent) -> None:
    """One check-in over HTTP, as the agent sends it."""
    response = requests.post(
        base_url + "/api/v1/devices/heartbeat",
        json={},
        headers={"X-Device-Id": agent.device.public_id, "X-Api-Key": agent.api_key},
        timeout=10,
    )
    assert response.status_code < 300, response.text


def card(page: Page, name: str):
    return page.locator(f'#dashboard-cards [data-card="{name}"] .card-value')


def tile(page: Page, public_id: str):
    return page.locator(f'#dashboard-grid [data-device="{public_id}"]')


def api_count(page: Page, **filters: str) -> int:
    # The page's own session: what this operator's API sees.
    response = page.request.get("/api/v1/devices", params=filters)
    assert response.ok, response.text()
    return response.json()["count"]


def test_the_cards_count_what_the_api_lists(operator_page: Page, live_server, make_agent):
    agents = [make_agent(f"pi-{n}") for n in range(5)]
    for agent in agents[:3]:
        heartbeat(live_server.url, agent)
    Device.objects.filter(pk=agents[2].device.pk).update(status=Device.Status.OFFLINE)

    operator_page.goto("/admin/")

    expect(card(operator_page, "online")).to_have_text(
        str(api_count(operator_page, status="online"))
    )
    expect(card(operator_page, "offline")).to_have_text(
        str(api_count(operator_page, status="offline"))
    )
    expect(card(operator_page, "never_seen")).to_have_text(
        str(api_count(operator_page, status="new"))
    )
    assert [api_count(operator_page, status=s) for s in ("online", "offline", "new")] == [2, 1, 2]
    expect(operator_page.locator("#dashboard-grid .tile")).to_have_count(api_count(operator_page))


def test_a_device_that_stops_checking_in_turns_offline_on_the_open_page_with_a_toast(
    operator_page: Page, live_server, make_agent, start_worker
):
    quiet, steady = make_agent("pi-quiet"), make_agent("pi-steady")
    # pi-quiet is due every second: once it stops, the next sweep finds it overdue.
    Device.objects.filter(pk=quiet.device.pk).update(checkin_interval=timedelta(seconds=1))
    heartbeat(live_server.url, quiet)
    heartbeat(live_server.url, steady)
    log = start_worker(DEVICE_OFFLINE_GRACE_SECONDS="0")
    operator_page.goto("/admin/")
    expect(tile(operator_page, "pi-quiet")).to_have_attribute("data-status", "online")
    expect(card(operator_page, "offline")).to_have_text("0")

    time.sleep(1.5)  # pi-quiet sends nothing more: it is now past its interval
    # What beat sends every OFFLINE_SWEEP_SECONDS, run by the real worker.
    celery_app.send_task("devices.tasks.mark_devices_offline")

    try:
        expect(tile(operator_page, "pi-quiet")).to_have_attribute(
            "data-status", "offline", timeout=LIVE_MS
        )
    except AssertionError as missed:
        raise AssertionError(f"worker log:\n{log.read_text()[-3000:]}") from missed
    expect(card(operator_page, "offline")).to_have_text("1", timeout=LIVE_MS)
    expect(tile(operator_page, "pi-steady")).to_have_attribute("data-status", "online")
    toast = operator_page.locator('#dashboard-toasts [data-kind="device.offline"]')
    expect(toast).to_contain_text("pi-quiet", timeout=LIVE_MS)


def test_a_device_that_checks_in_turns_online_on_the_open_page_with_a_toast(
    operator_page: Page, live_server, agent
):
    operator_page.goto("/admin/")
    expect(tile(operator_page, agent.device.public_id)).to_have_attribute("data-status", "new")

    heartbeat(live_server.url, agent)

    expect(tile(operator_page, agent.device.public_id)).to_have_attribute(
        "data-status", "online", timeout=LIVE_MS
    )
    expect(card(operator_page, "online")).to_have_text("1")
    toast = operator_page.locator('#dashboard-toasts [data-kind="device.online"]')
    expect(toast).to_contain_text(agent.device.public_id)


def test_the_operators_command_finishing_shows_a_toast(
    operator_page: Page, agent, enqueue, device_loop
):
    operator_page.goto("/admin/")

    enqueue(agent, "ping")  # queued by this operator; the device loop runs it

    toast = operator_page.locator('#dashboard-toasts [data-kind="command.succeeded"]')
    expect(toast).to_contain_text(agent.device.public_id, timeout=LIVE_MS)
