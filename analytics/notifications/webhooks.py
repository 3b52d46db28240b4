"""Webhook deliveries as the Standard Webhooks specification says: a JSON POST
with `webhook-id` (the delivery's message id, the same on every attempt),
`webhook-timestamp` (this attempt) and `webhook-signature` (`v1,` + base64
HMAC-SHA256 of `id.timestamp.body` with the channel's `whsec_` secret).

Redirects are not followed (a redirect could lead a signed body anywhere, and
around the address check): a 3xx is a failure the operator fixes in the URL.
"""

import http.client
import socket
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from standardwebhooks import Webhook

from analytics.notifications import outcome
from analytics.notifications.network import UrlRefused, WebhookTarget, webhook_target
from analytics.notifications.outcome import AttemptResult

USER_AGENT = "HOMEPOT"
# We read the start of an answer only (its status is what counts), never a flood.
RESPONSE_READ_BYTES = 1024


def webhook_headers(*, secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    at = at.astimezone(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def webhook_post(*, url: str, body: str, headers: dict[str, str], now: datetime) -> AttemptResult:
    """One POST of a signed body; never raises for what the network or receiver does."""
    try:
        target = webhook_target(url)
    except UrlRefused as exc:
        return outcome.refused(str(exc))
    except OSError as exc:  # no DNS answer, perhaps for now
        return outcome.retryable(f"cannot resolve {urlsplit(url).hostname}: {exc}")
    connection = _connection(target)
    try:
        connection.request("POST", target.path, body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read(RESPONSE_READ_BYTES)
    except TimeoutError:
        return outcome.retryable(f"timed out after {settings.NOTIFY_TIMEOUT_SECONDS:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return outcome.retryable(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
    return response_result(response, now=now)


def response_result(response: http.client.HTTPResponse, *, now: datetime) -> AttemptResult:
    status = response.status
    if 200 <= status < 300:
        return outcome.delivered(status)
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(response.getheader("retry-after"), now=now)
        return outcome.retryable(f"HTTP {status} {response.reason}", status, retry_after)
    if 300 <= status < 400:
        location = response.getheader("location", "")
        return outcome.refused(f"HTTP {status}: redirect to {location!r} not followed", status)
    return outcome.refused(f"HTTP {status} {response.reason}", status)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


# --- Connecting to the checked address --------------------------------------------------


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP to the host of the URL (Host header, TLS name) at addresses resolved
    and checked before: the connection never resolves the name again."""

    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses

    def connect(self) -> None:
        self.sock = _connect_first(self.addresses, self.port, self.timeout)


class _PinnedTlsConnection(http.client.HTTPSConnection):
    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.addresses = target.addresses

    def connect(self) -> None:
        sock = _connect_first(self.addresses, self.port, self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def _connection(target: WebhookTarget) -> http.client.HTTPConnection:
    kind = _PinnedTlsConnection if target.scheme == "https" else _PinnedConnection
    return kind(target, settings.NOTIFY_TIMEOUT_SECONDS)


def _connect_first(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A connection to the first of the addresses that answers."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error
