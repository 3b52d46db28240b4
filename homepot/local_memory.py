"""Facts remembered inside this process, forgotten everywhere at once.

A Redis round trip is most of an agent request's cost. So each process
remembers what the agents' hot path keeps asking (a device key it verified,
a command queue it found empty), grouped by *scope* ("auth:pi-1",
"queue:42"). Whoever changes the truth behind a scope resets it: the scope
name is published on a Redis channel, and a listener thread in every process
drops what it remembered for that scope.

The memory is used only while the subscription is known to be alive (the
listener pings Redis and gets answers). On any doubt, a lost connection or
a missing pong, everything remembered is dropped and every request goes to
the shared cache again until the subscription is back.
"""

import logging
import os
import sys
import threading
import time
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL = "homepot:local-memory:reset"
PING_SECONDS = 2.0
# No pong for this long: the subscription may be dead, so stop trusting memory.
SILENCE_SECONDS = 6.0


class LocalMemory:
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}
        # Bumped on every reset of a scope: a lookup that started before a reset
        # must not store its (possibly outdated) answer after it.
        self._resets: dict[str, int] = {}
        self._alive_until = 0.0
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._pid = 0

    # --- remembering ------------------------------------------------------------------------

    def get(self, scope: str, entry_key: str) -> dict[str, Any] | None:
        if not self._trusted():
            return None
        return self._entries.get(scope, {}).get(entry_key)

    def version(self, scope: str) -> int:
        return self._resets.get(scope, 0)

    def put(self, scope: str, entry_key: str, entry: dict[str, Any], version: int) -> None:
        if not self._trusted():
            return
        with self._lock:
            if self._resets.get(scope, 0) == version:
                self._entries.setdefault(scope, {})[entry_key] = entry

    def reset(self, *scopes: str) -> None:
        """Forget the scopes here and in every other process."""
        for scope in scopes:
            self.forget(scope)
        with redis.Redis.from_url(self._redis_url) as client, client.pipeline() as pipe:
            for scope in scopes:
                pipe.publish(CHANNEL, scope)
            pipe.execute()

    def forget(self, scope: str) -> None:
        with self._lock:
            self._resets[scope] = self._resets.get(scope, 0) + 1
            self._entries.pop(scope, None)

    def clear(self) -> None:
        with self._lock:
            for scope in self._entries:
                self._resets[scope] = self._resets.get(scope, 0) + 1
            self._entries.clear()

    # --- the subscription -----------------------------------------------------------------

    def _trusted(self) -> bool:
        if time.monotonic() < self._alive_until:
            return True
        self._start_listener()
        return False

    def _start_listener(self) -> None:
        # One listener per process (gunicorn forks workers after import).
        if self._listener is not None and self._listener.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if (
                self._listener is not None
                and self._listener.is_alive()
                and self._pid == os.getpid()
            ):
                return
            self._pid = os.getpid()
            self._listener = threading.Thread(target=self._listen_forever, daemon=True)
            self._listener.start()

    def _listen_forever(self) -> None:
        while True:
            try:
                self._listen()
            except Exception as exc:  # any failure: distrust memory, reconnect
                if sys.is_finalizing():
                    return
                logger.warning("local memory invalidation listener: %s", exc)
            self._alive_until = 0.0
            self.clear()
            time.sleep(1.0)

    def _listen(self) -> None:
        client = redis.Redis.from_url(self._redis_url, socket_timeout=SILENCE_SECONDS)
        pubsub = client.pubsub()
        pubsub.subscribe(CHANNEL)
        next_ping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + PING_SECONDS
            message = pubsub.get_message(timeout=PING_SECONDS / 2)
            if message is None:
                continue
            kind = message["type"]
            if kind in ("subscribe", "pong"):
                self._alive_until = time.monotonic() + SILENCE_SECONDS
            elif kind == "message":
                self.forget(message["data"].decode())


_memory: LocalMemory | None = None


def local_memory() -> LocalMemory | None:
    """The process's memory, or None without Redis (the file cache has no pub/sub)."""
    global _memory
    if _memory is None and settings.REDIS_URL:
        _memory = LocalMemory(settings.REDIS_URL)
    return _memory
