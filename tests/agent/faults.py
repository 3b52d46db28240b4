"""A small in-process HTTP proxy in front of the live server that answers on cue.

``FaultyProxy.answer`` decides, per request, whether the proxy forwards it to
the server or answers itself (429 with Retry-After, 503, a redirect, ...).
Every request the proxy sees is recorded with what it answered.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Canned:
    """An answer the proxy gives instead of forwarding."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"detail": "canned", "code": "canned"}'
    forward_first: bool = False  # the server gets the request; its answer is lost


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int
    at: float = 0.0  # time.monotonic() when the request arrived


# method, path, body -> None (forward) or a canned answer
Rule = Callable[[str, str, bytes], "Canned | None"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.answer: Rule = lambda method, path, body: None
        # method, path -> headers added to a forwarded answer (a server's advertisement)
        self.add_headers: Callable[[str, str], dict[str, str]] = lambda method, path: {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                canned = proxy.answer(self.command, self.path, body)
                if canned is None:
                    status, headers, payload = proxy._forward(self, body)
                    headers = {**headers, **proxy.add_headers(self.command, self.path)}
                else:
                    if canned.forward_first:
                        proxy._forward(self, body)
                    status, headers, payload = canned.status, canned.headers, canned.body
                    headers = {"Content-Type": "application/json", **headers}
                proxy._record(Seen(self.command, self.path, dict(self.headers), status, arrived))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.target, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        connection.request(request.command, request.path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        return response.status, kept, payload

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def statuses(self, path_part: str) -> list[int]:
        with self._lock:
            return [s.status for s in self.seen if path_part in s.path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def always(canned: Canned | None, path_part: str = "") -> Rule:
    """Answer `canned` to every request whose path contains `path_part` (None: forward)."""
    return lambda method, path, body: canned if path_part in path else None
