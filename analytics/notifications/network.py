"""Where a webhook may go: the URL's form, and the addresses its host resolves to.

With NOTIFY_WEBHOOK_ALLOW_PRIVATE off, a webhook must not reach this server's own
network (a channel pointed at 127.0.0.1:6379 or a cloud metadata address would
make the server a proxy into it). The host is resolved, every address checked,
and the delivery connects to a checked address, never resolving again: a name
that answers a public address to the check and a private one to the connection
(DNS rebinding) gets nowhere.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

URL_MAX_CHARS = 500  # NotificationChannel.url
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """A webhook URL deliveries may not use: no longer valid, or its host resolves
    to an address webhooks may not reach (the setting is off)."""


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL taken apart, with the addresses a delivery may connect to."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    addresses: list[str]


def webhook_url_validate(url: str) -> None:
    """An http or https URL with a host and no credentials (they would show in
    the admin and the logs; a receiver authenticates us by the signature).
    With private addresses blocked, the host is resolved and checked too.
    Raises ValidationError."""
    parts = _url_parts(url)
    if not settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        try:
            host_addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
        except UrlRefused as exc:
            raise ValidationError(str(exc), code="blocked_address") from None
        except OSError:
            raise ValidationError(
                f"The host {parts.hostname!r} does not resolve.", code="unresolvable_host"
            ) from None


def _url_parts(url: str) -> SplitResult:
    if len(url) > URL_MAX_CHARS:
        raise ValidationError(f"At most {URL_MAX_CHARS} characters.", code="too_long")
    if _CONTROL_OR_SPACE.search(url):
        raise ValidationError("No spaces or control characters.", code="invalid_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is no number or out of range)
    except ValueError:
        raise ValidationError("Enter a valid URL.", code="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http and https URLs.", code="invalid_scheme")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "No user name or password in the URL: receivers check the signature.",
            code="credentials_in_url",
        )
    if not parts.hostname or not _host_valid(parts.hostname):
        raise ValidationError("Enter a URL with a host name or IP address.", code="invalid_url")
    return parts


def _host_valid(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def webhook_target(url: str) -> WebhookTarget:
    """Resolve a stored webhook URL for a delivery. Raises UrlRefused, or
    OSError when the host does not resolve (perhaps for now: retried)."""
    try:
        parts = _url_parts(url)
    except ValidationError as exc:
        raise UrlRefused(f"invalid URL: {exc.messages[0]}") from None
    port = parts.port or _default_port(parts.scheme)
    host = parts.hostname or ""
    return WebhookTarget(
        scheme=parts.scheme,
        host=host,
        port=port,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        addresses=host_addresses(host, port),
    )


def host_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host`, each checked against the setting; raises
    UrlRefused if any is refused (one bad address refuses the host: which
    one a connection would use is not ours to choose), OSError if none resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if not address_public(ipaddress.ip_address(address)):
                raise UrlRefused(
                    f"{host} resolves to {address}, a private, loopback, link-local or "
                    "reserved address (NOTIFY_WEBHOOK_ALLOW_PRIVATE is off)"
                )
    return addresses


def address_public(address: Address) -> bool:
    """Globally reachable: not private, loopback, link-local, shared (CGNAT),
    multicast, reserved or unspecified. An IPv4 address inside IPv6
    (::ffff:127.0.0.1) is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast
