"""The device page in the admin: bounded however long the device's history, with
its command and telemetry panels contributed by those apps."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import Device, Event

PAGE_LIMIT_BYTES = 150_000


@pytest.fixture
def browser(viewer) -> Client:
    browser = Client()
    browser.force_login(viewer)
    return browser


def page_of(browser: Client, device: Device) -> str:
    response = browser.get(f"/admin/devices/device/{device.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def add_events(device: Device, count: int) -> None:
    """`count` events a minute apart, the newest now; message names their number."""
    now = timezone.now()
    events = Event.objects.bulk_create(
        Event(device=device, kind="device.online", message=f"event number {i}", data={"i": i})
        for i in range(count)
    )
    for i, event in enumerate(events):  # auto_now_add: set the times after the insert
        Event.objects.filter(pk=event.pk).update(created_at=now - timedelta(minutes=count - i))


def test_a_device_with_500_events_renders_well_under_150_kb(browser, agent):
    add_events(agent.device, 500)

    html = page_of(browser, agent.device)

    assert len(html.encode()) < PAGE_LIMIT_BYTES / 2  # "well under"


def test_the_page_shows_the_latest_50_events_newest_first(browser, agent):
    add_events(agent.device, 120)

    html = page_of(browser, agent.device)

    events = html.split('id="homepot-events"')[1].split("</fieldset>")[0]
    assert events.count("<tr><td>") == 50
    # the registration (newest) first, then the newest 49 of these
    assert "device.registered" in events.split("event number")[0]
    shown = [int(n) for n in re.findall(r"event number (\d+)<", events)]
    assert shown == list(range(119, 70, -1))


def test_the_page_links_to_all_events_of_the_device(browser, agent, make_agent):
    other = make_agent("pi-2").device
    add_events(agent.device, 60)
    add_events(other, 3)

    html = page_of(browser, agent.device)
    [link] = re.findall(r'href="(/admin/devices/event/\?[^"]+)"[^>]*>All ', html)
    full_list = browser.get(link.replace("&amp;", "&"))

    assert full_list.status_code == 200
    listed = full_list.content.decode()
    assert "61 events" in listed  # its 60 and the registration
    assert "pi-2" not in listed


def test_a_device_without_events_says_so(browser, site):
    device = Device.objects.create(public_id="quiet", name="Quiet", site=site)

    html = page_of(browser, device)

    assert "No events yet." in html


def test_the_page_costs_the_same_queries_with_many_events(browser, agent):
    def queries_for_page() -> int:
        page_of(browser, agent.device)  # warm: the session and the user
        with CaptureQueriesContext(connection) as captured:
            page_of(browser, agent.device)
        return len(captured)

    add_events(agent.device, 5)
    few = queries_for_page()
    add_events(agent.device, 300)

    assert queries_for_page() == few


def test_the_page_has_the_telemetry_and_command_panels(browser, agent, enqueue):
    enqueue(agent, "reboot")

    html = page_of(browser, agent.device)

    assert 'id="homepot-telemetry"' in html
    commands = html.split('id="homepot-commands"')[1].split("</fieldset>")[0]
    assert "reboot" in commands
    assert f"/admin/commands/command/?device__id__exact={agent.device.pk}" in commands.replace(
        "&amp;", "&"
    )


def test_a_viewer_sees_the_queue_actions_only_if_allowed(browser, operator, agent):
    operator_browser = Client()
    operator_browser.force_login(operator)

    for_viewer = browser.get("/admin/devices/device/").content.decode()
    for_operator = operator_browser.get("/admin/devices/device/").content.decode()

    assert 'value="queue_ping"' not in for_viewer
    assert 'value="queue_ping"' in for_operator
    assert 'value="queue_restart_service"' in for_operator


def test_the_commands_link_lists_only_that_devices_commands(browser, agent, make_agent, enqueue):
    enqueue(agent, "reboot")
    enqueue(make_agent("pi-2"), "ping")

    html = page_of(browser, agent.device)
    [link] = re.findall(r'href="(/admin/commands/command/\?[^"]+)"[^>]*>All ', html)
    listed = browser.get(link.replace("&amp;", "&"))

    assert listed.status_code == 200
    assert "1 command" in listed.content.decode()
    assert "pi-2" not in listed.content.decode()


def test_panels_are_shown_only_with_their_apps_permission(agent, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("dev-only", password="x", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_device"))
    browser = Client()
    browser.force_login(staff)

    html = page_of(browser, agent.device)

    assert 'id="homepot-events"' in html
    assert 'id="homepot-commands"' not in html
    assert 'id="homepot-telemetry"' not in html
