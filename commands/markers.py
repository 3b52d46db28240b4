"""The per-device queue marker: lets an empty poll skip the database.

A marker in the cache says "this device may have queued commands"; a process
also remembers (local memory) that it found a queue empty, until an enqueue
anywhere resets that.
"""

from collections.abc import Iterable

from django.core.cache import cache
from django.db import transaction

from homepot.local_memory import local_memory

# How long a process may believe a queue empty without hearing otherwise; only
# matters if an invalidation message were lost, which pings otherwise rule out.
EMPTY_QUEUE_MEMORY_SECONDS = 60.0


def marker_key(device_pk: int) -> str:
    return f"cmdq:{device_pk}"


def queue_scope(device_pk: int) -> str:
    return f"queue:{device_pk}"


def queue_mark(device_pks: Iterable[int]) -> None:
    """Note that these devices may have queued commands.

    Set now and again after commit: a poll that cleared the marker before our
    commit finds the marker set again afterwards. Every process forgets that
    it found these queues empty.
    """
    device_pks = list(device_pks)
    if not device_pks:
        return
    keys = {marker_key(pk): 1 for pk in device_pks}
    memory = local_memory()

    def mark() -> None:
        cache.set_many(keys, timeout=None)
        if memory is not None:
            memory.reset(*(queue_scope(pk) for pk in device_pks))

    mark()
    transaction.on_commit(mark)
