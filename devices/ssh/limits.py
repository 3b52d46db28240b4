"""How many SSH sessions are open at once: at most SSH_MAX_CONCURRENCY in all, and
at most SSH_MAX_SESSIONS_PER_TARGET to any one target (a slow board never takes
every slot).

With Redis (REDIS_URL) the slots are leases in two sorted sets shared by every
worker process and machine: the global set and the target's set, member = a
random token, score = when the lease ends (Redis's own clock, so the workers'
clocks do not matter). One Lua script drops expired leases and takes a slot in
both sets or in neither, so a crashed worker's slot frees itself when its lease
ends. Without Redis (the embedded default runs one worker process) the slots
are counters of this process only: they bound that one process, not several
(Procfile.dev runs one worker process with a threads pool for that reason).

A round asks for a slot with a bounded wait; `SlotUnavailable` tells it to let
Celery retry it later instead of holding a worker.
"""

import random
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

GLOBAL_KEY = "homepot:ssh:sessions"
# Between two tries for a slot (jittered, so waiting rounds do not wake together).
POLL_SECONDS = 0.05
# Past the round's own timeouts: the lease must not end while its session is open.
LEASE_MARGIN_SECONDS = 10.0


class SlotUnavailable(Exception):
    """No session slot was free within the wait."""


def target_key(target_pk: int) -> str:
    return f"{GLOBAL_KEY}:target:{target_pk}"


def session_lease_seconds(check_timeouts: list[float]) -> float:
    """How long a round may hold its slot: connect, every check's timeout, a margin."""
    return settings.SSH_CONNECT_TIMEOUT_SECONDS + sum(check_timeouts) + LEASE_MARGIN_SECONDS


@contextmanager
def session_slot(*, target_pk: int, lease: float, wait: float) -> Iterator[None]:
    """Hold one global and one per-target slot inside the block.

    Waits at most `wait` seconds, then raises SlotUnavailable."""
    slots = _redis_slots() or _local_slots
    token = slots.acquire(target_pk, lease=lease, wait=wait)
    try:
        yield
    finally:
        slots.release(target_pk, token)


def _poll_delay() -> float:
    return POLL_SECONDS * random.uniform(0.5, 1.5)


# --- Redis: leases in sorted sets, shared by all workers ---------------------------

# KEYS: global set, target set. ARGV: token, lease ms, global limit, target limit.
ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
-- An idle target's set goes away; the global set lives as long as any lease.
redis.call('PEXPIRE', KEYS[2], lease)
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
"""


class RedisSlots:
    def __init__(self, client: object) -> None:
        self.client = client
        self.script = client.register_script(ACQUIRE_SCRIPT)

    def acquire(self, target_pk: int, *, lease: float, wait: float) -> str:
        token = secrets.token_hex(8)
        keys = [GLOBAL_KEY, target_key(target_pk)]
        limits = [settings.SSH_MAX_CONCURRENCY, settings.SSH_MAX_SESSIONS_PER_TARGET]
        deadline = time.monotonic() + wait
        while not self.script(keys=keys, args=[token, int(lease * 1000), *limits]):
            if time.monotonic() >= deadline:
                raise SlotUnavailable(f"no SSH session slot free within {wait:g} s")
            time.sleep(_poll_delay())
        return token

    def release(self, target_pk: int, token: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(GLOBAL_KEY, token)
            pipe.zrem(target_key(target_pk), token)
            pipe.execute()


_redis_slots_by_client: dict[int, RedisSlots] = {}


def _redis_slots() -> RedisSlots | None:
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        return None
    client = cache._cache.get_client(GLOBAL_KEY, write=True)
    slots = _redis_slots_by_client.get(id(client))
    if slots is None or slots.client is not client:
        slots = _redis_slots_by_client[id(client)] = RedisSlots(client)
    return slots


# --- One process: semaphores -------------------------------------------------------


class LocalSlots:
    """Slots of this process only (the embedded default's single worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_global = 0
        self.open_by_target: dict[int, int] = {}
        self.freed = threading.Condition(self.lock)

    def acquire(self, target_pk: int, *, lease: float, wait: float) -> str:
        deadline = time.monotonic() + wait
        with self.freed:
            while not self._free(target_pk):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SlotUnavailable(f"no SSH session slot free within {wait:g} s")
                self.freed.wait(remaining)
            self.open_global += 1
            self.open_by_target[target_pk] = self.open_by_target.get(target_pk, 0) + 1
        return ""

    def _free(self, target_pk: int) -> bool:
        return (
            self.open_global < settings.SSH_MAX_CONCURRENCY
            and self.open_by_target.get(target_pk, 0) < settings.SSH_MAX_SESSIONS_PER_TARGET
        )

    def release(self, target_pk: int, token: str) -> None:
        with self.freed:
            self.open_global -= 1
            left = self.open_by_target.pop(target_pk) - 1
            if left:
                self.open_by_target[target_pk] = left
            self.freed.notify_all()


_local_slots = LocalSlots()
