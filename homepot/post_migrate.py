"""Helpers for post_migrate handlers that write rows (built-in checks and rules)."""

from typing import Any

from django.db import connections
from django.db.models import Model


def synced_model(kwargs: dict[str, Any], model: type[Model]) -> type[Model] | None:
    """The model a post_migrate handler should write through (the migration state's
    version when the signal carries one), or None when its table does not exist:
    migrated back before it, or a flush after a test that migrated back (which
    passes today's models, not the tables')."""
    apps = kwargs.get("apps")
    try:
        state_model = apps.get_model(model._meta.label) if apps else model
    except LookupError:
        return None
    using = kwargs.get("using", "default")
    if state_model._meta.db_table not in connections[using].introspection.table_names():
        return None
    return state_model
