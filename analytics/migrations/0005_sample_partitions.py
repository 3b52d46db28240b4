"""PostgreSQL: analytics_sample becomes a table partitioned by range of ts
(analytics/partitions.py creates and drops the daily partitions). SQLite keeps
the plain table: both directions are no-ops there.

The rows stay where they are: the old table is renamed and attached as one
partition, analytics_sample_legacy, covering everything before the next UTC
day. Its CHECK constraint, validated first, lets ATTACH skip its own scan; its
primary key and BRIN index become partitions of the parent's indexes instead
of being built again. The cost is one read of the old table under the
migration's lock, not a copy. Retention prunes the legacy partition row by row
as before until all of it is past the horizon, then drops it.

Rows dated from the next day on (device clocks ahead) are moved into the parent
first, so they land in the default partition; post_migrate then creates the
daily partitions (partitions_ensure) and moves them into theirs.

Reverse: every row is copied into a plain table again (slow on a big table;
for downgrades only).
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations

PARENT = "analytics_sample"
LEGACY = "analytics_sample_legacy"
DEFAULT = "analytics_sample_default"


def _next_day() -> str:
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).isoformat()


def to_partitioned(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    boundary = _next_day()
    for sql in [
        f"ALTER TABLE {PARENT} RENAME TO {LEGACY}",
        f"ALTER TABLE {LEGACY} RENAME CONSTRAINT {PARENT}_pkey TO {LEGACY}_pkey",
        f"ALTER INDEX IF EXISTS {PARENT}_ts_brin RENAME TO {LEGACY}_ts_brin",
        f"CREATE TABLE {PARENT} (LIKE {LEGACY} INCLUDING DEFAULTS) PARTITION BY RANGE (ts)",
        f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (device_id, metric_id, ts)",
        # Still wanted per partition: fleet-wide time ranges (rollups, the
        # dashboard's ingest rate) and the legacy partition's row-level prune.
        f"CREATE INDEX {PARENT}_ts_brin ON {PARENT} USING brin (ts)",
        f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT",
        f"WITH moved AS (DELETE FROM {LEGACY} WHERE ts >= '{boundary}' RETURNING *)"
        f" INSERT INTO {PARENT} SELECT * FROM moved",
        f"ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY}_ts CHECK (ts < '{boundary}') NOT VALID",
        f"ALTER TABLE {LEGACY} VALIDATE CONSTRAINT {LEGACY}_ts",
        f"ALTER TABLE {PARENT} ATTACH PARTITION {LEGACY}"
        f" FOR VALUES FROM (MINVALUE) TO ('{boundary}')",
    ]:
        schema_editor.execute(sql)


def to_plain(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in [
        f"CREATE TABLE {PARENT}_plain (LIKE {PARENT} INCLUDING DEFAULTS)",
        f"INSERT INTO {PARENT}_plain SELECT * FROM {PARENT}",
        f"DROP TABLE {PARENT}",  # and every partition with it
        f"ALTER TABLE {PARENT}_plain RENAME TO {PARENT}",
        f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (device_id, metric_id, ts)",
        f"CREATE INDEX {PARENT}_ts_brin ON {PARENT} USING brin (ts)",
    ]:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_alerting")]

    operations = [migrations.RunPython(to_partitioned, to_plain)]
