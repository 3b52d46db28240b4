"""The agent's side of the HOMEPOT API (requests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from homepot_agent import __version__

POLL_HEADER = "X-Poll-Interval"


class Unreachable(Exception):
    """The server could not be reached or answered 5xx: try again later."""


class Refused(Exception):
    """The server refused the request (4xx); retrying the same request will not help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass
class Pending:
    commands: list[dict[str, Any]]
    advised_interval: float | None


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
        if device_id and api_key:
            self.session.headers.update({"X-Device-ID": device_id, "X-API-Key": api_key})

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(
                method, self.base + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise Unreachable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise Unreachable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Refused(response.status_code, _detail(response))
        return response

    def health(self) -> bool:
        return self._call("GET", "/health").ok

    def register(self, *, site_id: str, token: str, device: dict[str, Any]) -> dict[str, Any]:
        response = self._call(
            "POST",
            f"/api/v1/devices/sites/{site_id}/devices",
            json=device,
            headers={"X-Enrollment-Token": token},
        )
        return response.json()

    def push(self, *, batch_id: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"batch_id": batch_id, "samples": samples}
        return self._call("POST", "/api/v1/analytics/device-metrics", json=body).json()

    def heartbeat(self, attributes: dict[str, Any]) -> None:
        body = {"attributes": attributes, "agent_version": __version__}
        self._call("POST", "/api/v1/devices/heartbeat", json=body)

    def pending(self) -> Pending:
        response = self._call("GET", "/api/v1/devices/pending")
        advised = response.headers.get(POLL_HEADER)
        try:
            interval = float(advised) if advised else None
        except ValueError:
            interval = None
        return Pending(commands=response.json(), advised_interval=interval)

    def ack(self, device_id: str, command_id: str) -> None:
        self._call("POST", f"/api/v1/devices/{device_id}/commands/{command_id}/ack")

    def report(self, command_id: str, report: dict[str, Any]) -> None:
        self._call("PUT", f"/api/v1/devices/{command_id}/status", json=report)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]
