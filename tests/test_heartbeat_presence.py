"""POST /api/v1/devices/heartbeat, last_seen coalescing and the offline sweep."""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices import services, tasks
from devices.models import Device, Event
from devices.presence import presence_cache_clear

URL = "/api/v1/devices/heartbeat"


def beat(client, agent, body=None):
    return client.post(URL, body or {}, format="json", **agent.headers)


def test_a_heartbeat_marks_the_device_online_with_an_event(client, agent):
    response = beat(client, agent)

    assert response.status_code == 200
    device = Device.objects.get()
    assert device.status == "online"
    assert device.last_seen is not None
    assert Event.objects.filter(kind="device.online", device=device).count() == 1


def test_last_seen_is_written_once_per_window(client, agent, django_assert_num_queries):
    beat(client, agent)
    first_seen = Device.objects.get().last_seen

    with django_assert_num_queries(0):
        beat(client, agent)

    assert Device.objects.get().last_seen == first_seen


def test_state_attributes_are_stored_and_unchanged_ones_cost_no_write(
    client, agent, django_assert_num_queries
):
    state = {
        "attributes": {"uptime_s": 12, "services": {"nginx": "active"}},
        "agent_version": "1.2",
    }
    assert beat(client, agent, state).status_code == 200

    device = Device.objects.get()
    assert device.attributes == state["attributes"]
    assert device.agent_version == "1.2"
    with django_assert_num_queries(0):
        beat(client, agent, state)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"attributes": "x"}, "attributes"),
        ({"attributes": {"blob": "x" * 9000}}, "attributes"),
        ({"agent_version": "v" * 40}, "agent_version"),
    ],
)
def test_bad_state_is_400_naming_the_field(client, agent, body, field):
    response = beat(client, agent, body)

    assert response.status_code == 400
    assert field in response.json()
    assert Device.objects.get().attributes == {}


def test_a_device_past_its_interval_and_grace_goes_offline_once(client, agent, settings):
    settings.DEVICE_OFFLINE_GRACE_SECONDS = 30
    beat(client, agent)
    last_seen = Device.objects.get().last_seen
    interval = Device.objects.get().checkin_interval

    still_fine = last_seen + interval + timedelta(seconds=29)
    assert services.devices_mark_offline(now=still_fine) == []
    overdue = last_seen + interval + timedelta(seconds=31)
    assert services.devices_mark_offline(now=overdue) == ["pi-1"]
    assert services.devices_mark_offline(now=overdue) == []

    assert Device.objects.get().status == "offline"
    assert Event.objects.filter(kind="device.offline").count() == 1


def test_the_sweep_honours_each_devices_own_interval(make_agent, settings):
    settings.DEVICE_OFFLINE_GRACE_SECONDS = 0
    fast = make_agent("fast", checkin_interval_seconds=10)
    slow = make_agent("slow", checkin_interval_seconds=600)
    now = timezone.now()
    Device.objects.update(status="online", last_seen=now)

    flipped = services.devices_mark_offline(now=now + timedelta(seconds=60))

    assert flipped == [fast.device.public_id]
    assert Device.objects.get(pk=slow.device.pk).status == "online"


def test_a_device_that_checks_in_again_comes_back_online(client, agent):
    beat(client, agent)
    Device.objects.update(last_seen=timezone.now() - timedelta(hours=1))
    services.devices_mark_offline()
    assert Device.objects.get().status == "offline"
    presence_cache_clear()  # the last_seen write window has passed

    beat(client, agent)

    assert Device.objects.get().status == "online"
    assert Event.objects.filter(kind="device.online").count() == 2


def test_the_beat_task_runs_the_sweep(agent):
    Device.objects.update(status="online", last_seen=timezone.now() - timedelta(hours=1))

    assert tasks.mark_devices_offline() == 1
    assert Device.objects.get().status == "offline"


def test_decommissioned_devices_are_not_swept(agent, operator):
    Device.objects.update(status="online", last_seen=timezone.now() - timedelta(hours=1))
    services.device_decommission(device=agent.device, actor=operator)

    assert services.devices_mark_offline() == []
