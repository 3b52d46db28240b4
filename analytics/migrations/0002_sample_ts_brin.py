from django.db import migrations


def create_brin(apps, schema_editor) -> None:  # noqa: ANN001
    # Samples arrive in time order, so a BRIN index on ts is a few pages for
    # millions of rows: it lets retention delete old rows without a full scan.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS analytics_sample_ts_brin "
            "ON analytics_sample USING brin (ts)"
        )


def drop_brin(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS analytics_sample_ts_brin")


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_initial")]

    operations = [migrations.RunPython(create_brin, drop_brin)]
