"""Counters of failed attempts that always expire.

A counter is a fixed window: the first failure starts it, and it is gone
``window`` seconds later. With Redis, INCR and EXPIRE NX run in one
transaction, so no counter can ever be left without an expiry (Django's own
``incr`` checks for the key and then increments it: a key expiring between
the two is re-created by INCR with no expiry at all).
"""

from collections.abc import Iterable

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache


def counts_get(keys: Iterable[str]) -> dict[str, int]:
    """The current count of each key (0 when absent), one cache round trip."""
    keys = list(keys)
    found = caches["default"].get_many(keys)
    return {key: int(found.get(key, 0)) for key in keys}


def count_add(key: str, *, window: int) -> None:
    """Add one to the key's count; the key expires `window` seconds after its first count."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        client = cache._cache.get_client(key, write=True)
        full_key = cache.make_and_validate_key(key)
        with client.pipeline(transaction=True) as pipe:
            pipe.incr(full_key)
            pipe.expire(full_key, window, nx=True)
            pipe.execute()
        return
    # The file cache of the embedded default: not atomic (a lost count is
    # harmless), and every write renews the expiry, so the window slides.
    cache.set(key, int(cache.get(key, 0)) + 1, timeout=window)
