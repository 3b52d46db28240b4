"""Command.command_id and CommandGroup.group_id become `public_id` in Python, so
that `command_id` / `group_id` only ever name integer foreign keys (Event.command,
Command.group). The columns keep their names (db_column), so this changes the
migration state only: no SQL, no table rewrite."""

import uuid

from django.db import migrations, models

STATE = [
    migrations.RenameField(model_name="command", old_name="command_id", new_name="public_id"),
    migrations.AlterField(
        model_name="command",
        name="public_id",
        field=models.UUIDField(
            "command id", db_column="command_id", default=uuid.uuid4, editable=False, unique=True
        ),
    ),
    migrations.RenameField(model_name="commandgroup", old_name="group_id", new_name="public_id"),
    migrations.AlterField(
        model_name="commandgroup",
        name="public_id",
        field=models.UUIDField(
            "group id", db_column="group_id", default=uuid.uuid4, editable=False, unique=True
        ),
    ),
]


class Migration(migrations.Migration):
    # After devices 0003, whose data migration reads Command.command_id by its old name.
    dependencies = [
        ("commands", "0003_command_finished_at_index"),
        ("devices", "0004_public_id"),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=STATE)]
