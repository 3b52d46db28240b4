"""Admin login throttling (django-axes): who is counted, and requests without a request.

Failures are counted per username and client address together (settings:
AXES_LOCKOUT_PARAMETERS), so someone elsewhere cannot lock an operator out.
"""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

USERNAME_MAX_CHARS = 150  # Django's username length; the attempts table allows 255


def client_address(request: HttpRequest) -> str:
    """The client address exactly as the API's throttles see it.

    X-Forwarded-For is read only as far as NUM_PROXIES trusted proxies reach,
    so a client cannot pick a fresh address per attempt by forging the header.
    """
    return BaseThrottle().get_ident(request)


def submitted_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The username an attempt is counted under, fit for the attempts table.

    Login forms refuse names longer than a username can be, but django-axes
    records the raw POST field: cut it to the column and drop NULs (which
    PostgreSQL refuses) rather than answer 500.
    """
    raw = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(raw).replace("\x00", "")[:USERNAME_MAX_CHARS]


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses logins of a locked-out username at that address; authenticates no one.

    Logins through a request (the admin form) are checked. A call to
    ``authenticate()`` without a request has no client address to throttle
    (the test client's ``login()``, shell scripts): it is left to the next
    backend instead of failing, as django-axes would by default.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
