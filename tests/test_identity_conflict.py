"""Two agents using one identity: POST /api/v1/devices/heartbeat with
`attributes.instance_id` (random per agent process start), and the device page."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from devices import services
from devices.models import Device, Event

URL = "/api/v1/devices/heartbeat"
WARNING_RE = re.compile(r'<li class="warning">(.*?)</li>', re.S)
A, B, C = "a" * 32, "b" * 32, "c" * 32


def beat(client, agent, instance_id: str, address: str = "10.0.0.1", **attributes):
    body = {"attributes": {"instance_id": instance_id, **attributes}, "agent_version": "1.0"}
    return client.post(URL, body, format="json", REMOTE_ADDR=address, **agent.headers)


def conflicts() -> list[Event]:
    return list(Event.objects.filter(kind="device.identity_conflict"))


def test_two_instances_heartbeating_in_turn_are_a_conflict(client, agent):
    assert beat(client, agent, A, "10.0.0.1").status_code == 200
    assert beat(client, agent, B, "10.0.0.2").status_code == 200
    assert conflicts() == []

    assert beat(client, agent, A, "10.0.0.1").status_code == 200

    [event] = conflicts()
    assert event.device == agent.device
    assert sorted(event.data["instance_ids"]) == [A, B]
    assert sorted(event.data["addresses"]) == ["10.0.0.1", "10.0.0.2"]
    assert "10.0.0.2" in event.message


def test_a_conflict_is_recorded_once_per_window(client, agent):
    for _ in range(5):
        beat(client, agent, A, "10.0.0.1")
        beat(client, agent, B, "10.0.0.2")

    assert len(conflicts()) == 1


@pytest.mark.parametrize(
    "instances",
    [[A, A, B, B, B], [A, B, C], [A, B, B, C, C]],
    ids=["restart", "two-restarts", "restarts-with-repeats"],
)
def test_a_restart_is_no_conflict(client, agent, instances):
    for instance in instances:
        assert beat(client, agent, instance).status_code == 200

    assert conflicts() == []


def test_instances_in_turn_further_apart_than_the_window_are_no_conflict(
    client, agent, settings, monkeypatch
):
    settings.DEVICE_IDENTITY_CONFLICT_WINDOW_SECONDS = 600
    start = timezone.now()
    beat(client, agent, A)
    beat(client, agent, B)

    later = start + timedelta(seconds=601)
    monkeypatch.setattr(timezone, "now", lambda: later)
    beat(client, agent, A)  # e.g. a restored backup of the agent's old process state

    assert conflicts() == []


def test_an_unchanged_heartbeat_with_an_instance_id_costs_no_query(
    client, agent, django_assert_num_queries
):
    beat(client, agent, A, uptime=1)

    with django_assert_num_queries(0):
        assert beat(client, agent, A, uptime=1).status_code == 200


@pytest.mark.parametrize("instance_id", [7, "", "x" * 200, ["a"]])
def test_a_malformed_instance_id_is_400(client, agent, instance_id):
    response = beat(client, agent, instance_id)

    assert response.status_code == 400
    assert "instance_id" in response.json()["attributes"]
    assert Device.objects.get().attributes == {}


def test_the_operator_sees_the_conflict_on_the_device_page(client, agent, operator):
    beat(client, agent, A, "10.0.0.1")
    beat(client, agent, B, "10.0.0.2")
    beat(client, agent, A, "10.0.0.1")
    browser = Client()
    browser.force_login(operator)

    page = browser.get(f"/admin/devices/device/{agent.device.pk}/change/").content.decode()

    # A warning at the top of the page, not only a row among the events.
    warning = WARNING_RE.search(page)
    assert warning is not None
    assert "Two agents are using this device&#x27;s identity" in warning.group(1)
    assert B in warning.group(1) and "10.0.0.2" in warning.group(1)


def test_the_warning_goes_once_the_key_is_rotated(client, agent, operator):
    for instance in (A, B, A):
        beat(client, agent, instance)
    services.device_key_rotate(device=agent.device, actor=operator)
    browser = Client()
    browser.force_login(operator)

    page = browser.get(f"/admin/devices/device/{agent.device.pk}/change/").content.decode()

    assert WARNING_RE.search(page) is None
