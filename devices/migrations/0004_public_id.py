"""Site.site_id and Device.device_id become `public_id` in Python, so that
`site_id` / `device_id` only ever name the integer foreign keys of the models
that point at a site or a device. The columns keep their names (db_column), so
this changes the migration state only: no SQL, no table rewrite."""

import django.core.validators
from django.db import migrations, models

STATE = [
    migrations.RenameField(model_name="site", old_name="site_id", new_name="public_id"),
    migrations.AlterField(
        model_name="site",
        name="public_id",
        field=models.SlugField("site id", db_column="site_id", max_length=64, unique=True),
    ),
    migrations.AlterModelOptions(name="site", options={"ordering": ["public_id"]}),
    migrations.RenameField(model_name="device", old_name="device_id", new_name="public_id"),
    migrations.AlterField(
        model_name="device",
        name="public_id",
        field=models.CharField(
            "device id",
            db_column="device_id",
            max_length=64,
            unique=True,
            validators=[
                django.core.validators.RegexValidator(
                    "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
                    "Use 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter "
                    "or digit.",
                )
            ],
        ),
    ),
    migrations.AlterModelOptions(
        name="device",
        options={
            "ordering": ["public_id"],
            "permissions": [
                ("rotate_key", "Can rotate a device's API key"),
                ("revoke_key", "Can revoke a device's API keys"),
                ("decommission", "Can decommission a device"),
            ],
        },
    ),
]


class Migration(migrations.Migration):
    dependencies = [("devices", "0003_event_command")]

    operations = [migrations.SeparateDatabaseAndState(state_operations=STATE)]
