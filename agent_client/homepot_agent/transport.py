"""The agent's side of the HOMEPOT API (requests).

Every answer is sorted into one of two failures the agent acts on:

* ``Unreachable``: try again later, keep everything. No connection, a timeout,
  429, and every 5xx. ``retry_after`` carries the server's ``Retry-After``.
* ``Refused``: the server will not take this request as it is (4xx), or it
  answered a redirect. Redirects are never followed: the request would carry
  the device key or the enrollment token to wherever the ``Location`` points.
"""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from homepot_agent import __version__

POLL_HEADER = "X-Poll-Interval"
# A server that can hold a poll open sends the longest `wait` it grants, on
# polls and heartbeats. Without it, polls are answered at once.
LONG_POLL_HEADER = "X-Long-Poll-Max"
# A long poll's read timeout is its wait plus this: the server answers at the
# end of the wait, and a little later under load.
LONG_POLL_MARGIN = 10.0
# While an operator watches this device's thermal view (any device response may carry them).
THERMAL_INTERVAL_HEADER = "X-Thermal-Interval"
THERMAL_LEASE_HEADER = "X-Thermal-Lease"
THERMAL_MIN_INTERVAL = 0.25  # 4 Hz at most, whatever the server says
BUSY = 429  # Too Many Requests: the server asks us to come back later


class Unreachable(Exception):
    """No answer, or the server is busy or failing (429, 5xx): try again later.

    ``status`` is None when nothing answered; ``retry_after`` is the server's
    Retry-After in seconds, if it sent one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Refused(Exception):
    """The server refused the request (4xx, or a redirect not followed); sending
    the same request again will not help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail

    @property
    def key_refused(self) -> bool:
        """401/403: the server does not accept this device's key (or no longer)."""
        return self.status in (401, 403)


@dataclass
class Pending:
    commands: list[dict[str, Any]]
    advised_interval: float | None
    long_poll_max: float | None = None  # X-Long-Poll-Max: None if not advertised
    thermal: tuple[float, float] | None = None  # (interval, lease), see thermal_advice


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header in seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ApiClient:
    def __init__(
        self,
        server_url: str,
        *,
        device_id: str = "",
        api_key: str = "",
        verify: bool | str = True,
        timeout: float = 15.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base = server_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = f"homepot-agent/{__version__}"
        self.timeout = timeout
        # Called with (interval, lease) seconds when an answer carries the thermal headers.
        self.on_thermal: Callable[[float, float], None] | None = None
        if device_id and api_key:
            self.session.headers.update({"X-Device-ID": device_id, "X-API-Key": api_key})

    def fork(self) -> ApiClient:
        """The same server and identity on a session of its own, calling no hooks:
        for a request made on another thread (the long poll)."""
        twin = ApiClient(self.base, verify=self.session.verify, timeout=self.timeout)
        twin.session.headers.update(self.session.headers)
        return twin

    def close(self) -> None:
        self.session.close()

    def _send(
        self, method: str, path: str, timeout: float | None, **kwargs: Any
    ) -> requests.Response:
        return self.session.request(
            method,
            self.base + path,
            timeout=self.timeout if timeout is None else timeout,
            allow_redirects=False,
            **kwargs,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        again_if_dropped: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        try:
            try:
                response = self._send(method, path, timeout, **kwargs)
            except requests.ConnectionError as exc:
                if not (again_if_dropped and dropped_unanswered(exc)):
                    raise
                # Most likely a kept-alive connection the server had just closed as
                # idle (gunicorn keeps them 2 s): once more, on a fresh connection.
                # Every request but registering is safe to repeat (see the server's
                # ack, report and batch_id).
                response = self._send(method, path, timeout, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        status = response.status_code
        if status == BUSY or status >= 500:
            raise Unreachable(
                f"{method} {path}: HTTP {status}",
                status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            raise Refused(
                status,
                f"the server answered a redirect to {location}; not followed, it would carry "
                "this device's credentials: set server_url to the address that answers",
            )
        if status >= 400:
            raise Refused(status, _detail(response))
        self._thermal_advice(response)
        return response

    def _thermal_advice(self, response: requests.Response) -> None:
        advice = thermal_advice(response.headers)
        if advice is not None and self.on_thermal is not None:
            self.on_thermal(*advice)

    def health(self) -> bool:
        return self._call("GET", "/health").ok

    def register(self, *, site_id: str, token: str, device: dict[str, Any]) -> dict[str, Any]:
        response = self._call(
            "POST",
            f"/api/v1/devices/sites/{site_id}/devices",
            json=device,
            headers={"X-Enrollment-Token": token},
            again_if_dropped=False,  # a token may be good for one use only
        )
        return response.json()

    def push(self, *, batch_id: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"batch_id": batch_id, "samples": samples}
        return self._call("POST", "/api/v1/analytics/device-metrics", json=body).json()

    def heartbeat(self, attributes: dict[str, Any] | None) -> float | None:
        """Report state attributes; None: a bare "I am alive" that changes nothing
        the running agent reported (``status`` uses it). Returns the server's
        long-poll advertisement (X-Long-Poll-Max), None without one."""
        body = (
            None if attributes is None else {"attributes": attributes, "agent_version": __version__}
        )
        response = self._call("POST", "/api/v1/devices/heartbeat", json=body)
        return long_poll_advert(response.headers)

    def pending(self, limit: int | None = None, wait: int = 0) -> Pending:
        """Queued commands. With `wait` (seconds) a server that long-polls holds
        the request until a command is queued or the wait is over; the read
        timeout is longer than the wait, so an answer at its end is not lost."""
        params: dict[str, int] = {}
        if limit:
            params["limit"] = limit
        if wait > 0:
            params["wait"] = wait
        timeout = max(self.timeout, wait + LONG_POLL_MARGIN) if wait > 0 else None
        response = self._call(
            "GET", "/api/v1/devices/pending", params=params or None, timeout=timeout
        )
        return Pending(
            commands=response.json(),
            advised_interval=_seconds(response.headers.get(POLL_HEADER)),
            long_poll_max=long_poll_advert(response.headers),
            thermal=thermal_advice(response.headers),
        )

    def thermal_frame(self, frame: dict[str, Any]) -> None:
        """One thermal camera frame ({ts, width, height, values}); live only, never spooled."""
        self._call("POST", "/api/v1/analytics/thermal-frames", json=frame)

    def ack(self, device_id: str, command_id: str) -> None:
        self._call("POST", f"/api/v1/devices/{device_id}/commands/{command_id}/ack")

    def report(self, command_id: str, report: dict[str, Any]) -> None:
        self._call("PUT", f"/api/v1/devices/{command_id}/status", json=report)


def dropped_unanswered(exc: BaseException) -> bool:
    """The server closed or reset the connection before any answer (not: refused,
    timed out): what a request on a connection it just closed as idle meets."""
    seen: BaseException | None = exc
    for _ in range(5):  # requests' error wraps urllib3's, which wraps http.client's
        if isinstance(seen, (http.client.RemoteDisconnected, ConnectionResetError)):
            return True
        if seen is None:
            return False
        inner = [a for a in seen.args if isinstance(a, BaseException)]
        seen = inner[-1] if inner else seen.__cause__
    return False


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def long_poll_advert(headers: Any) -> float | None:
    """X-Long-Poll-Max in seconds; None when absent, not a number, or not above 0."""
    seconds = _seconds(headers.get(LONG_POLL_HEADER))
    return seconds if seconds is not None and seconds > 0 else None


def thermal_advice(headers: Any) -> tuple[float, float] | None:
    """(interval, lease) from X-Thermal-Interval / X-Thermal-Lease, or None when
    absent or not usable numbers; the interval is never below 0.25 s."""
    try:
        interval = float(headers.get(THERMAL_INTERVAL_HEADER) or "nan")
        lease = float(headers.get(THERMAL_LEASE_HEADER) or "nan")
    except ValueError:
        return None
    if not (math.isfinite(interval) and math.isfinite(lease)) or interval <= 0 or lease <= 0:
        return None
    return max(THERMAL_MIN_INTERVAL, interval), lease


def wait_for_server(client: ApiClient, seconds: float) -> None:
    """At boot the network or the server may come up after the agent: ask for
    /health once a second until it answers or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.health()
            return
        except Unreachable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]
