"""Hashing of DRF authtoken's plain-text tokens into knox's table.

Shared by the migration and its test. Plain SQL: the authtoken app is no
longer installed, so its table exists only in databases created before.
"""

from datetime import timedelta

from django.conf import settings
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    days = settings.API_TOKEN_TTL_DAYS
    expiry = timezone.now() + timedelta(days=days) if days else None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")
        rows = cursor.fetchall()
        for key, user_id, created in rows:
            cursor.execute(
                "INSERT INTO knox_authtoken (digest, token_key, user_id, created, expiry) "
                "VALUES (%s, %s, %s, %s, %s)",
                [hash_token(key), key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id, created, expiry],
            )
    # The plain text must not stay behind in the database.
    schema_editor.execute(f"DROP TABLE {LEGACY_TABLE}")
