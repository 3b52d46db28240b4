"""devices 0003: command events written before events had a command key get it
from the command_id in their data."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("devices", "0002_device_key_self_rotated_at"),
    ("commands", "0003_command_finished_at_index"),
]
AFTER = [("devices", "0003_event_command")]


def migrate(targets: list[tuple[str, str]]):  # noqa: ANN201 (a historical app registry)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def back_to_latest():  # noqa: ANN201
    """Leave the schema as every other test expects it: at the latest migrations."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_latest")
def test_existing_command_events_are_linked_to_their_command():
    apps = migrate(BEFORE)
    try:
        Site, Device = apps.get_model("devices", "Site"), apps.get_model("devices", "Device")
        Event, Command = apps.get_model("devices", "Event"), apps.get_model("commands", "Command")
        site = Site.objects.create(site_id="lab-9", name="Lab 9")
        device = Device.objects.create(device_id="pi-9", name="pi-9", device_type="x", site=site)
        command = Command.objects.create(device=device, command_type="ping", timeout_seconds=5)
        linked = Event.objects.create(
            device=device, kind="command.queued", data={"command_id": str(command.command_id)}
        )
        gone = Event.objects.create(
            device=device, kind="command.queued", data={"command_id": str(uuid.uuid4())}
        )
        garbled = Event.objects.create(
            device=device, kind="command.queued", data={"command_id": "x"}
        )
        other = Event.objects.create(device=device, kind="device.online", data={})
    finally:
        apps = migrate(AFTER)

    Event = apps.get_model("devices", "Event")
    commands = dict(Event.objects.values_list("pk", "command_id"))
    assert commands == {linked.pk: command.pk, gone.pk: None, garbled.pk: None, other.pk: None}
