"""Integration API tokens (django-rest-knox): issued once, stored hashed.

A token is ``hpt_`` + 64 hex characters. The database keeps its SHA-512
digest and its first 15 characters (to find the row); a dump of the database
cannot authenticate. Tokens carried over from DRF's authtoken (40 hex
characters) were hashed the same way by the ``homepot`` migration and keep
working until they expire.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions

# New tokens, and the plain tokens DRF's authtoken issued before.
TOKEN_FORMAT = re.compile(rb"hpt_[0-9a-f]{64}|[0-9a-f]{40}")


class IntegrationTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``, refused cheaply when it cannot be a token.

    knox decodes and queries whatever it is sent: a NUL or a non-UTF-8 byte
    would reach the database driver and answer 500 instead of 401.
    """

    def authenticate_credentials(self, token: bytes) -> tuple[AbstractBaseUser, AuthToken]:
        if not TOKEN_FORMAT.fullmatch(token):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)


def api_token_issue(*, user: AbstractBaseUser, expires_in: timedelta | None) -> str:
    """A new token for `user`; the only time its plain text exists."""
    _, token = AuthToken.objects.create(user=user, expiry=expires_in)
    return token


def api_token_revoke_all(*, user: AbstractBaseUser) -> int:
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def default_expiry() -> timedelta | None:
    days = settings.API_TOKEN_TTL_DAYS
    return timedelta(days=days) if days else None


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    target_class = IntegrationTokenAuthentication
    name = "IntegrationToken"
    priority = 1

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201 (drf-spectacular hook)
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "An integration token issued by `manage.py homepot_token USER` (or "
                "`homepot_user USER --role ROLE --token`), sent as "
                "`Authorization: Token hpt_...`."
            ),
        }
