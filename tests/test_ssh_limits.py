"""Session slots: the global and per-target limits, in Redis (shared by every worker)
and in one process; and, against the real sshd, 20 targets with a limit of 5
measured on the server side."""

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import connection

from devices.ssh import limits
from devices.ssh.limits import SlotUnavailable, session_slot

REDIS = "redis"
LOCAL = "local"


def slots_use(kind: str, settings) -> None:  # noqa: ANN001
    """Redis slots (the cache is Redis when REDIS_URL is set) or this process's."""
    if kind == REDIS:
        if not os.environ.get("REDIS_URL"):
            pytest.skip("needs REDIS_URL")
        _redis_keys_clear()
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(params=[REDIS, LOCAL])
def slots(request, settings) -> Iterator[str]:  # noqa: ANN001
    """Each test runs on both kinds of slots: 2 in all, 1 per target."""
    slots_use(request.param, settings)
    settings.SSH_MAX_CONCURRENCY = 2
    settings.SSH_MAX_SESSIONS_PER_TARGET = 1
    yield request.param
    if request.param == REDIS:
        _redis_keys_clear()


@pytest.fixture
def redis_slots(settings) -> Iterator[None]:  # noqa: ANN001
    slots_use(REDIS, settings)
    settings.SSH_MAX_CONCURRENCY = 2
    yield
    _redis_keys_clear()


def _redis_client():  # noqa: ANN202 (redis.Redis)
    return caches["default"]._cache.get_client(limits.GLOBAL_KEY, write=True)


def _redis_keys_clear() -> None:
    client = _redis_client()
    keys = list(client.scan_iter(f"{limits.GLOBAL_KEY}*"))
    if keys:
        client.delete(*keys)


def hold(target_pk: int, release: threading.Event, lease: float = 30) -> threading.Thread:
    """A round in another thread holding a slot until `release` is set."""
    taken = threading.Event()

    def run() -> None:
        with session_slot(target_pk=target_pk, lease=lease, wait=5):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert taken.wait(5)
    return thread


def test_the_global_limit_refuses_a_slot_after_the_wait(slots) -> None:
    release = threading.Event()
    holders = [hold(1, release), hold(2, release)]

    started = time.monotonic()
    with pytest.raises(SlotUnavailable, match="within 0.2 s"):
        with session_slot(target_pk=3, lease=30, wait=0.2):
            pass
    assert time.monotonic() - started >= 0.2

    release.set()
    for holder in holders:
        holder.join()
    with session_slot(target_pk=3, lease=30, wait=0.2):
        pass


def test_a_busy_target_does_not_take_the_other_targets_slots(slots) -> None:
    release = threading.Event()
    holder = hold(1, release)

    with pytest.raises(SlotUnavailable):
        with session_slot(target_pk=1, lease=30, wait=0.1):
            pass
    # The refused round took no global slot: another target still gets the last one.
    with session_slot(target_pk=2, lease=30, wait=0.1):
        pass

    release.set()
    holder.join()


def test_a_waiting_round_gets_the_slot_as_soon_as_it_is_released(slots) -> None:
    release = threading.Event()
    holder = hold(1, release)
    threading.Timer(0.2, release.set).start()

    with session_slot(target_pk=1, lease=30, wait=5):
        assert release.is_set()
    holder.join()


def test_a_crashed_workers_redis_slot_expires_with_its_lease(redis_slots) -> None:
    # A worker that took both slots and died: nobody releases them.
    for target_pk in (1, 2):
        limits._redis_slots().acquire(target_pk, lease=0.3, wait=0)

    started = time.monotonic()
    with session_slot(target_pk=1, lease=30, wait=5):
        assert time.monotonic() - started >= 0.2
    assert _redis_client().zcard(limits.GLOBAL_KEY) == 0  # released on exit, expired ones gone


def test_redis_slots_are_released_and_idle_target_sets_expire(redis_slots) -> None:
    client = _redis_client()
    with session_slot(target_pk=7, lease=30, wait=0):
        assert client.zcard(limits.GLOBAL_KEY) == 1
        assert 0 < client.pttl(limits.target_key(7)) <= 30_000
    assert client.zcard(limits.GLOBAL_KEY) == 0
    assert client.zcard(limits.target_key(7)) == 0


# --- 20 targets against the real sshd, limit 5 ----------------------------------------------


def server_side_overlap(log: Path) -> int:
    """The most sessions running at once, from the start/end marks the commands wrote."""
    marks = []
    for line in log.read_text().split():
        kind, _, stamp = line.partition(":")
        marks.append((int(stamp), 1 if kind == "s" else -1))
    running = peak = 0
    for _, delta in sorted(marks, key=lambda mark: (mark[0], mark[1])):
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="20 threads recording at once: SQLite's in-memory test database locks whole "
    "tables (shared cache); CI runs PostgreSQL",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", [REDIS, LOCAL])
def test_twenty_targets_never_run_more_than_five_sessions_at_once(
    kind, site, sshd, ssh_identity, settings
) -> None:
    from devices.models import SshTarget
    from devices.ssh.runner import ssh_target_check_now
    from tests.ssh_targets import check_make, target_make

    slots_use(kind, settings)
    settings.SSH_MAX_CONCURRENCY = 5
    settings.SSH_SLOT_WAIT_SECONDS = 60
    log = sshd.workdir / f"sessions-{kind}.log"
    log.unlink(missing_ok=True)
    check = check_make(
        "session-mark",
        f'echo "s:$(date +%s%N)" >> {log}; sleep 0.3; echo "e:$(date +%s%N)" >> {log}; echo 1',
    )
    targets = [target_make(site, f"wet-{n}", [check], server=sshd) for n in range(20)]
    statuses: dict[int, str] = {}

    def round_now(target: SshTarget) -> None:
        try:
            statuses[target.pk] = ssh_target_check_now(target=target, actor=None).status
        finally:
            connection.close()

    threads = [threading.Thread(target=round_now, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert statuses == {t.pk: "ok" for t in targets}
    assert log.read_text().count("e:") == 20
    assert 3 <= server_side_overlap(log) <= 5  # the limit, and sessions did overlap
