"""Verified device keys remembered inside this process, with immediate invalidation.

A Redis round trip is most of an agent request's cost. This process keeps
the keys it has verified, and drops a device's keys the moment any process
rotates, revokes or decommissions it: that process publishes the device id
on a Redis channel, and a listener thread here is subscribed to it.

The memory is used only while the subscription is known to be alive (the
listener pings Redis and gets answers). On any doubt, a lost connection or
a missing pong, everything remembered is dropped and every request goes to
the shared cache again until the subscription is back.
"""

import logging
import os
import threading
import time
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL = "homepot:devauth:reset"
PING_SECONDS = 2.0
# No pong for this long: the subscription may be dead, so stop trusting memory.
SILENCE_SECONDS = 6.0


class LocalKeyMemory:
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}
        # Bumped on every reset of a device: a verification that started before
        # a reset must not store its (possibly revoked) result after it.
        self._resets: dict[str, int] = {}
        self._alive_until = 0.0
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._pid = 0

    # --- used by device authentication --------------------------------------------------

    def get(self, device_id: str, entry_key: str) -> dict[str, Any] | None:
        if not self._trusted():
            return None
        return self._entries.get(device_id, {}).get(entry_key)

    def version(self, device_id: str) -> int:
        return self._resets.get(device_id, 0)

    def put(self, device_id: str, entry_key: str, entry: dict[str, Any], version: int) -> None:
        if not self._trusted():
            return
        with self._lock:
            if self._resets.get(device_id, 0) == version:
                self._entries.setdefault(device_id, {})[entry_key] = entry

    def reset(self, device_id: str) -> None:
        """Forget the device here and in every other process."""
        self.forget(device_id)
        redis.Redis.from_url(self._redis_url).publish(CHANNEL, device_id)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._resets[device_id] = self._resets.get(device_id, 0) + 1
            self._entries.pop(device_id, None)

    def clear(self) -> None:
        with self._lock:
            for device_id in self._entries:
                self._resets[device_id] = self._resets.get(device_id, 0) + 1
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
                logger.warning("device key invalidation listener: %s", exc)
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


_memory: LocalKeyMemory | None = None


def local_key_memory() -> LocalKeyMemory | None:
    """The process's memory, or None without Redis (the file cache has no pub/sub)."""
    global _memory
    if _memory is None and settings.REDIS_URL:
        _memory = LocalKeyMemory(settings.REDIS_URL)
    return _memory
