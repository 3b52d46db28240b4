"""Move DRF authtoken's plain-text tokens to knox, hashed, and drop their table."""

from django.db import migrations

from homepot.migrations._legacy_tokens import hash_legacy_tokens


def forwards(apps, schema_editor):
    hash_legacy_tokens(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("knox", "0009_extend_authtoken_field"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)]
