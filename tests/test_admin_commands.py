"""Admin: queue commands on selected devices, read lifecycles, cancel."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from commands.models import Command, CommandGroup
from devices import services

CHANGELIST = "/admin/devices/device/"


@pytest.fixture
def browser() -> Client:
    return Client()


def run_action(browser, action: str, devices, **extra):
    return browser.post(
        CHANGELIST, {"action": action, "_selected_action": [d.pk for d in devices], **extra}
    )


def test_an_operator_pings_selected_devices(browser, operator, make_agent):
    devices = [make_agent("pi-1").device, make_agent("pi-2").device]
    browser.force_login(operator)

    response = run_action(browser, "queue_ping", devices)

    assert response.status_code == 302
    assert sorted(Command.objects.values_list("device__public_id", "command_type")) == [
        ("pi-1", "ping"),
        ("pi-2", "ping"),
    ]
    assert set(Command.objects.values_list("created_by__username", flat=True)) == {"otto"}


def test_restarting_a_service_asks_for_its_name_first(browser, operator, agent):
    browser.force_login(operator)

    form = run_action(browser, "queue_restart_service", [agent.device])
    assert form.status_code == 200
    assert 'name="service"' in form.content.decode()
    assert not Command.objects.exists()

    done = run_action(
        browser, "queue_restart_service", [agent.device], apply="1", service="nginx.service"
    )

    assert done.status_code == 302
    command = Command.objects.get()
    assert (command.command_type, command.payload) == (
        "restart_service",
        {"service": "nginx.service"},
    )


def test_a_bad_service_name_is_refused_on_the_form(browser, operator, agent):
    browser.force_login(operator)

    response = run_action(
        browser, "queue_stop_service", [agent.device], apply="1", service="x; reboot"
    )

    assert response.status_code == 200
    assert "Not a systemd unit name" in response.content.decode()
    assert not Command.objects.exists()


def test_a_viewer_cannot_queue_from_the_admin(browser, viewer, agent):
    browser.force_login(viewer)

    run_action(browser, "queue_reboot", [agent.device])

    assert not Command.objects.exists()
    assert 'value="queue_reboot"' not in browser.get(CHANGELIST).content.decode()


def test_the_command_page_shows_its_lifecycle(browser, viewer, client, agent, enqueue):
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)
    browser.force_login(viewer)

    page = browser.get(f"/admin/commands/command/{command.pk}/change/").content.decode()

    assert "ping: queued" in page
    assert "ping: queued -&gt; delivered" in page


def test_an_operator_cancels_from_the_command_list(browser, operator, agent, enqueue):
    command = enqueue(agent)
    browser.force_login(operator)

    browser.post("/admin/commands/command/", {"action": "cancel", "_selected_action": [command.pk]})

    command.refresh_from_db()
    assert command.status == "canceled"


def test_decommissioned_devices_in_the_selection_are_named_and_skipped(
    browser, operator, make_agent
):
    kept, retired = make_agent("pi-1").device, make_agent("pi-2").device
    services.device_decommission(device=retired, actor=operator)
    browser.force_login(operator)

    response = run_action(browser, "queue_reboot", [kept, retired])

    assert list(Command.objects.values_list("device__public_id", flat=True)) == ["pi-1"]
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["pi-2: Device pi-2 is decommissioned.", "Queued reboot for 1 device(s)."]


def test_a_selection_over_the_bulk_limit_is_refused_whole(browser, operator, make_agent, settings):
    settings.COMMAND_BULK_MAX_DEVICES = 1
    devices = [make_agent("pi-1").device, make_agent("pi-2").device]
    browser.force_login(operator)

    response = run_action(browser, "queue_ping", devices)

    assert not Command.objects.exists()
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "At most 1 devices per request."
    ]


def test_a_queue_action_goes_through_the_bulk_service_like_the_api(browser, operator, make_agent):
    devices = [make_agent("pi-1").device, make_agent("pi-2").device]
    browser.force_login(operator)

    run_action(browser, "queue_restart_service", devices, apply="1", service="nginx.service")

    group = CommandGroup.objects.get()
    assert (group.command_type, group.payload) == ("restart_service", {"service": "nginx.service"})
    assert group.target == {"device_ids": ["pi-1", "pi-2"]}
    assert set(Command.objects.values_list("group", flat=True)) == {group.pk}
