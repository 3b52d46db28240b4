"""Device authentication: X-Device-ID + X-API-Key.

A key is checked against its credential row by indexed queries and one
HMAC (devices.keys: why that is as safe as bcrypt for these keys). Keys still
stored as bcrypt hashes from before pay bcrypt once, are then re-hashed into
the HMAC form, and those checks run at most DEVICE_AUTH_BCRYPT_CONCURRENCY at
a time per process: beyond that the answer is 503 auth_busy with Retry-After,
so a fleet coming back after a cache flush cannot starve the rest of the API.

A verified key is also remembered in the shared cache under a SHA-256 of
device id and key (saving the query), tagged with the device's current *auth
generation*. Rotating, revoking or decommissioning replaces the
generation, which invalidates every remembered key of the device at once, on
every worker. One cache round trip (MGET of entry and generation) answers a
request whose key was seen before; with Redis, each process also remembers
keys itself and is told at once of every reset (homepot.local_memory), so most
requests need no round trip at all.
"""

import logging
import random
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from devices.identity import DeviceIdentity
from devices.keys import (
    NewKey,
    hash_secret,
    is_legacy_hash,
    needs_rehash,
    parse_api_key,
    secret_matches,
    sha256_hex,
)
from devices.models import DEVICE_ID_FORMAT, DeviceCredential
from devices.presence import device_mark_seen
from devices.throttle import count_add, counts_get
from homepot.local_memory import local_memory

logger = logging.getLogger(__name__)

DEVICE_ID_HEADER = "X-Device-ID"
API_KEY_HEADER = "X-API-Key"
# Retry-After of auth_busy, drawn per answer: refused agents spread out again.
BUSY_RETRY_AFTER_SECONDS = (1, 5)


def _generation_key(public_id: str) -> str:
    return f"devauth:gen:{public_id}"


def auth_scope(public_id: str) -> str:
    """The local-memory scope reset whenever the device's keys change (a waiting
    long poll wakes on it too)."""
    return f"auth:{public_id}"


def _entry_key(public_id: str, api_key: str) -> str:
    return f"devauth:key:{sha256_hex(public_id, api_key)}"


def _generation_seconds() -> int:
    # Outlives every entry remembered under it (they last DEVICE_AUTH_CACHE_SECONDS);
    # when it expires anyway, a new one only costs one more check of the key.
    return 2 * settings.DEVICE_AUTH_CACHE_SECONDS


def auth_generation_reset(public_id: str) -> None:
    """Forget every remembered key of the device, now and again after commit.

    The second reset closes the race with a request that read the credential
    row before this transaction committed and is about to remember it.
    """

    def reset() -> None:
        cache.set(_generation_key(public_id), secrets.token_hex(8), timeout=_generation_seconds())
        memory = local_memory()
        if memory is not None:
            memory.reset(auth_scope(public_id))

    reset()
    transaction.on_commit(reset)


def _current_generation(public_id: str) -> str:
    key = _generation_key(public_id)
    cache.add(key, secrets.token_hex(8), timeout=_generation_seconds())
    return cache.get(key)


class TooManyRequests(APIException):
    """429 with Retry-After and a machine-readable code."""

    status_code = 429

    def __init__(self, detail: str, *, code: str, wait: int) -> None:
        self.wait = wait  # DRF's handler turns it into Retry-After
        super().__init__({"detail": detail, "code": code})


class AuthThrottled(TooManyRequests):
    """Refused before the check: too many failed checks from this address or of this key."""

    def __init__(self, wait: int) -> None:
        super().__init__(
            "Too many failed authentication attempts; try again later.",
            code="auth_throttled",
            wait=wait,
        )


class AuthBusy(APIException):
    """503 with Retry-After: every slot for a legacy bcrypt check is taken.

    Not a failure of the key: it is not counted against it, and the agent
    keeps its key and comes back after Retry-After."""

    status_code = 503

    def __init__(self) -> None:
        self.wait = random.randint(*BUSY_RETRY_AFTER_SECONDS)  # DRF sends it as Retry-After
        super().__init__(
            {
                "detail": "The server is busy verifying device keys; retry after Retry-After.",
                "code": "auth_busy",
            }
        )


class _Slots:
    """A non-blocking counting limit for this process's threads.

    Per process, not shared through Redis: the cache being flushed or gone is
    exactly when this limit is needed, a worker that dies cannot leak a slot,
    and taking one costs no round trip. What it protects is the CPU of the
    machine the process runs on, so the machine's bound is
    workers x DEVICE_AUTH_BCRYPT_CONCURRENCY.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0

    @contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        with self._lock:
            if self._taken >= limit:
                raise AuthBusy()
            self._taken += 1
        try:
            yield
        finally:
            with self._lock:
                self._taken -= 1


_bcrypt_slots = _Slots()


def _key_matches(key: NewKey, key_hash: str) -> bool:
    """One HMAC; a legacy bcrypt hash only in a free slot (else AuthBusy)."""
    if not is_legacy_hash(key_hash):
        return secret_matches(key, key_hash)
    with _bcrypt_slots.slot(settings.DEVICE_AUTH_BCRYPT_CONCURRENCY):
        return secret_matches(key, key_hash)


def _record_use(credential: DeviceCredential, key: NewKey) -> None:
    """Stamp last_used_at; a key stored in an older form is re-hashed into the
    current one. Conditional on the old hash: of two requests racing to
    re-hash, one rewrites it and the other changes nothing."""
    now = timezone.now()
    rows = DeviceCredential.objects.filter(pk=credential.pk)
    if needs_rehash(credential.key_hash):
        rehashed = rows.filter(key_hash=credential.key_hash).update(
            key_hash=hash_secret(key), last_used_at=now
        )
        if rehashed:
            logger.debug("device key %s re-hashed into the current form", key.key_id)
            return
    # last_used_at is accurate to the auth cache period anyway: a fleet coming
    # back after a cache flush does not rewrite every credential row.
    period = timedelta(seconds=settings.DEVICE_AUTH_CACHE_SECONDS)
    if credential.last_used_at is None or credential.last_used_at <= now - period:
        rows.update(last_used_at=now)


def _failure_keys(key_id: str, client_address: str) -> dict[str, int]:
    """The failure counters a check of a secret is limited by, with their limits.

    Not the device id: anyone may know it, and failures counted against it
    would lock the rightful key out. A key id is only known to whoever saw
    the key, and the address is the attacker's own.
    """
    return {
        f"devauth:fail:key:{key_id}": settings.DEVICE_AUTH_FAILURES_PER_KEY,
        f"devauth:fail:ip:{client_address}": settings.DEVICE_AUTH_FAILURES_PER_ADDRESS,
    }


def _refuse_if_throttled(limits: dict[str, int]) -> None:
    counts = counts_get(limits)
    if any(counts[key] >= limit for key, limit in limits.items()):
        raise AuthThrottled(wait=settings.DEVICE_AUTH_FAILURE_WINDOW_SECONDS)


def _count_failure(limits: dict[str, int]) -> None:
    for key in limits:
        count_add(key, window=settings.DEVICE_AUTH_FAILURE_WINDOW_SECONDS)


def _credential_exists(public_id: str, key_id: str) -> bool:
    return DeviceCredential.objects.filter(key_id=key_id, device__public_id=public_id).exists()


def _verify_against_database(
    public_id: str, parsed: NewKey, client_address: str
) -> DeviceCredential | None:
    """The credential the key belongs to, or None. Only a usable credential of
    this device, found by its key id, has its secret checked, and only that is
    throttled: unknown ids cost an indexed lookup and leave nothing behind."""
    credential = (
        DeviceCredential.objects.select_related("device")
        .filter(key_id=parsed.key_id, device__public_id=public_id)
        .first()
    )
    if credential is None or credential.device.decommissioned_at is not None:
        return None
    if not credential.is_usable(timezone.now()):
        return None
    limits = _failure_keys(parsed.key_id, client_address)
    _refuse_if_throttled(limits)
    if not _key_matches(parsed, credential.key_hash):
        _count_failure(limits)
        return None
    return credential


def _entry_for(credential: DeviceCredential, generation: str) -> dict[str, Any]:
    device = credential.device
    return {
        "gen": generation,
        "pk": device.pk,
        # "device_id", as the agent sends it: entries are shared through the
        # cache by processes of the previous release during a rolling deploy.
        "device_id": device.public_id,
        "site_pk": device.site_id,
        "credential_pk": credential.pk,
        "expires": credential.expires_at.timestamp() if credential.expires_at else None,
    }


def _remember(cache_key: str, entry: dict[str, Any]) -> None:
    timeout = settings.DEVICE_AUTH_CACHE_SECONDS
    if entry["expires"] is not None:
        timeout = max(1, min(timeout, int(entry["expires"] - timezone.now().timestamp())))
    cache.set(cache_key, entry, timeout=timeout)


def _identity_from_entry(entry: dict[str, Any]) -> DeviceIdentity:
    return DeviceIdentity(
        pk=entry["pk"],
        public_id=entry["device_id"],
        site_pk=entry["site_pk"],
        credential_pk=entry["credential_pk"],
    )


def _unexpired(entry: dict[str, Any]) -> bool:
    return entry["expires"] is None or entry["expires"] > timezone.now().timestamp()


def device_authenticate(*, public_id: str, api_key: str, client_address: str) -> DeviceIdentity:
    """Return the device the key belongs to, or raise AuthenticationFailed / AuthThrottled.

    Looks in this process's memory, then the shared cache, then checks the key
    against its credential row (AuthBusy while a legacy bcrypt check has no slot).
    A remembered key never meets the failure limits: an attacker guessing
    cannot lock out an agent whose key was already verified.
    """
    entry_key, generation_key = _entry_key(public_id, api_key), _generation_key(public_id)
    memory, scope = local_memory(), auth_scope(public_id)
    if memory is not None:
        entry = memory.get(scope, entry_key)
        if entry is not None and _unexpired(entry):
            return _identity_from_entry(entry)
        version = memory.version(scope)
    cached = cache.get_many([entry_key, generation_key])
    entry = cached.get(entry_key)
    if entry is not None and entry["gen"] == cached.get(generation_key) and _unexpired(entry):
        if memory is not None:
            memory.put(scope, entry_key, entry, version)
        return _identity_from_entry(entry)

    entry = _verify(public_id, api_key, client_address)
    if entry is None:
        logger.warning("device auth failed for %r from %s", public_id, client_address)
        raise AuthenticationFailed("Invalid device credentials.")
    _remember(entry_key, entry)
    if memory is not None:
        memory.put(scope, entry_key, entry, version)
    return _identity_from_entry(entry)


def _verify(public_id: str, api_key: str, client_address: str) -> dict[str, Any] | None:
    """The expensive path: the entry to remember for a valid key, else None."""
    parsed = parse_api_key(api_key)
    # Made-up ids cost one indexed query and leave nothing in the cache.
    if parsed is None or not _credential_exists(public_id, parsed.key_id):
        return None
    # Read the generation before the credential so a concurrent revocation wins.
    generation = _current_generation(public_id)
    credential = _verify_against_database(public_id, parsed, client_address)
    if credential is None:
        return None
    _record_use(credential, parsed)
    return _entry_for(credential, generation)


class DeviceKeyAuthentication(BaseAuthentication):
    """DRF authentication for agents. Marks the device as seen on success."""

    def authenticate(self, request: Request) -> tuple[DeviceIdentity, None] | None:
        public_id = request.headers.get(DEVICE_ID_HEADER, "")
        api_key = request.headers.get(API_KEY_HEADER, "")
        if not public_id and not api_key:
            return None
        if not public_id or not api_key:
            raise AuthenticationFailed(f"Send both {DEVICE_ID_HEADER} and {API_KEY_HEADER}.")
        if not DEVICE_ID_FORMAT.fullmatch(public_id):
            # No device can have this id: refuse before it becomes a cache key.
            raise AuthenticationFailed("Invalid device credentials.")
        client_address = BaseThrottle().get_ident(request)
        identity = device_authenticate(
            public_id=public_id, api_key=api_key, client_address=client_address
        )
        device_mark_seen(identity=identity)
        return identity, None

    def authenticate_header(self, request: Request) -> str:
        # Having a challenge makes DRF answer 401 rather than 403 without credentials.
        return "DeviceKey"


class IsDevice(BasePermission):
    """The request was authenticated with a device key."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, DeviceIdentity)


def require_same_device(identity: DeviceIdentity, public_id: str | None) -> None:
    """Refuse a request whose body or path names another device than the key's."""
    if public_id is not None and public_id != identity.public_id:
        raise PermissionDenied("A device can only act as itself.")
