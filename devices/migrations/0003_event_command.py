"""Events link to their command by an indexed foreign key; existing command
events get it from the command_id they carry in their data."""

import uuid

import django.db.models.deletion
from django.db import migrations, models

BATCH = 2000


def link_command_events(apps, schema_editor) -> None:  # noqa: ANN001
    Event = apps.get_model("devices", "Event")
    Command = apps.get_model("commands", "Command")
    unlinked = Event.objects.filter(kind__startswith="command.", command__isnull=True)
    last_pk = 0
    while True:
        rows = list(
            unlinked.filter(pk__gt=last_pk).order_by("pk").values_list("pk", "data")[:BATCH]
        )
        if not rows:
            return
        last_pk = rows[-1][0]
        wanted = {
            pk: str(data.get("command_id", "")) for pk, data in rows if isinstance(data, dict)
        }
        found = {
            str(command_id): pk
            for command_id, pk in Command.objects.filter(
                command_id__in=[value for value in wanted.values() if _is_uuid(value)]
            ).values_list("command_id", "pk")
        }
        events = [
            Event(pk=pk, command_id=found[value]) for pk, value in wanted.items() if value in found
        ]
        Event.objects.bulk_update(events, ["command"])


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Migration(migrations.Migration):
    dependencies = [
        ("commands", "0003_command_finished_at_index"),
        ("devices", "0002_device_key_self_rotated_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="command",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="events",
                to="commands.command",
            ),
        ),
        migrations.RunPython(link_command_events, migrations.RunPython.noop, elidable=True),
    ]
