"""Admin: queue commands on selected devices, read lifecycles, cancel."""

import pytest
from django.test import Client

from commands.models import Command

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
    assert sorted(Command.objects.values_list("device__device_id", "command_type")) == [
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
