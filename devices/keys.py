"""Generation and checking of device API keys and enrollment tokens.

A device key looks like ``hpk_<key_id>_<secret>``: the public ``key_id`` finds
the one credential row by index; the 32-byte random ``secret`` is what proves
the device.

How a key is stored, and why that is as safe as bcrypt
-------------------------------------------------------

``DeviceCredential.key_hash`` holds ``hmac-sha256$<kid>$<hex>``: HMAC-SHA256,
under a server-side *hash key*, of the key id and the secret. The hash key is
``DEVICE_KEY_HASH_KEY`` (or, when unset, derived from ``SECRET_KEY`` with a
purpose string of its own); it lives in the server's environment, never in the
database. ``kid`` is a short public fingerprint of the hash key that made the
hash, so hashes made under an older key (``DEVICE_KEY_HASH_KEY_FALLBACKS``)
are recognised and re-hashed under the current one on their next use.

* bcrypt's cost protects *guessable* secrets (passwords) against offline
  guessing. A device secret is 256 random bits: no amount of guessing finds it,
  whatever the hash costs (2^256 candidates at any speed). What the slow hash
  bought was nothing for these keys, and it cost 0.3 s of CPU per check.
* An attacker with a database dump gets key ids and HMAC values. Without the
  hash key they cannot even test a guess offline; with it they still face
  2^256 secrets. Nothing in the dump is accepted as a key: the server takes
  only ``hpk_<key_id>_<secret>`` and computes the HMAC itself, so a stolen
  hash cannot be replayed.
* Binding the key id into the HMAC means a hash copied onto another row
  (another key id) does not match the same secret there.
* Comparison is constant-time (``hmac.compare_digest``).
* Rotating the hash key: set the new ``DEVICE_KEY_HASH_KEY`` and list the old
  one in ``DEVICE_KEY_HASH_KEY_FALLBACKS``; each key is re-hashed on its next
  successful use, after which the old hash key can be dropped. Setting
  ``DEVICE_KEY_HASH_KEY`` explicitly lets ``SECRET_KEY`` rotate on its own
  (keys are moved onto it as they are used; the key derived from
  ``SECRET_KEY`` stays accepted meanwhile, so setting it later locks no
  device out). While it is unset, rotate ``SECRET_KEY`` Django's way, with the
  old one in ``SECRET_KEY_FALLBACKS``: the hash keys derived from those are
  accepted too. A ``SECRET_KEY`` replaced without a fallback while devices are
  still hashed under its derived key refuses those devices (401).

Keys stored before this design are bcrypt hashes (``$2b$...``). They still
verify, at bcrypt's price, and are re-hashed into the HMAC form on their first
successful check (devices.auth).
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

import bcrypt
from django.conf import settings
from django.utils.crypto import salted_hmac

KEY_PREFIX = "hpk"
TOKEN_PREFIX = "het"
_KEY_RE = re.compile(r"^hpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

HMAC_SCHEME = "hmac-sha256"
_HMAC_HASH_RE = re.compile(r"^hmac-sha256\$([0-9a-f]{8})\$([0-9a-f]{64})$")
# Purpose strings: the same secret never serves two uses under the same name.
_DERIVE_PURPOSE = "homepot.devices.keys.hash-key"
_KID_PURPOSE = b"homepot.devices.keys.kid"


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str

    @property
    def api_key(self) -> str:
        return f"{KEY_PREFIX}_{self.key_id}_{self.secret}"


def new_api_key() -> NewKey:
    return NewKey(key_id=secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def parse_api_key(api_key: str) -> NewKey | None:
    match = _KEY_RE.match(api_key)
    if match is None:
        return None
    return NewKey(key_id=match.group(1), secret=match.group(2))


# --- The hash keys -----------------------------------------------------------------------


@dataclass(frozen=True)
class HashKey:
    kid: str  # public: names the key in stored hashes, reveals nothing of it
    key: bytes


def _hash_key(raw: bytes) -> HashKey:
    kid = hmac.new(raw, _KID_PURPOSE, hashlib.sha256).hexdigest()[:8]
    return HashKey(kid=kid, key=raw)


def _derived(secret_key: str) -> bytes:
    return salted_hmac(_DERIVE_PURPOSE, "", secret=secret_key, algorithm="sha256").digest()


@lru_cache(maxsize=8)
def _hash_keys_of(
    explicit: str, fallbacks: tuple[str, ...], secret_key: str, secret_fallbacks: tuple[str, ...]
) -> tuple[HashKey, ...]:
    # The keys derived from SECRET_KEY (and its fallbacks) stay accepted after
    # DEVICE_KEY_HASH_KEY is set, so setting it later locks no device out.
    derived = [_derived(value) for value in (secret_key, *secret_fallbacks)]
    current = [explicit.encode()] if explicit else []
    raws = [*current, *derived[:1], *(value.encode() for value in fallbacks), *derived[1:]]
    unique = dict.fromkeys(raws)  # in order; the current key first
    return tuple(_hash_key(raw) for raw in unique)


def hash_keys() -> tuple[HashKey, ...]:
    """The current hash key first, then those still accepted (fallbacks)."""
    # Keyed by the settings' values, so a changed setting (tests) is seen at once.
    return _hash_keys_of(
        settings.DEVICE_KEY_HASH_KEY,
        tuple(settings.DEVICE_KEY_HASH_KEY_FALLBACKS),
        settings.SECRET_KEY,
        tuple(settings.SECRET_KEY_FALLBACKS),
    )


# --- Hashing and checking ------------------------------------------------------------------


def _digest(hash_key: HashKey, key: NewKey) -> str:
    # NUL-separated: a key id is hex and a secret base64url, neither holds NUL.
    message = f"{key.key_id}\0{key.secret}".encode()
    return hmac.new(hash_key.key, message, hashlib.sha256).hexdigest()


def hash_secret(key: NewKey) -> str:
    """The stored form of a new key: HMAC-SHA256 under the current hash key."""
    current = hash_keys()[0]
    return f"{HMAC_SCHEME}${current.kid}${_digest(current, key)}"


def is_legacy_hash(key_hash: str) -> bool:
    """A bcrypt hash from before the HMAC form: checking it costs ~0.3 s of CPU."""
    return key_hash.startswith("$2")


def needs_rehash(key_hash: str) -> bool:
    """Not in the HMAC form under the current hash key (bcrypt, or a fallback key)."""
    match = _HMAC_HASH_RE.match(key_hash)
    return match is None or match.group(1) != hash_keys()[0].kid


def secret_matches(key: NewKey, key_hash: str) -> bool:
    """Whether the key is the one stored as key_hash (HMAC form or legacy bcrypt)."""
    if is_legacy_hash(key_hash):
        return bcrypt_matches(key.secret, key_hash)
    match = _HMAC_HASH_RE.match(key_hash)
    if match is None:
        return False
    kid, stored = match.groups()
    for hash_key in hash_keys():
        if hash_key.kid == kid:
            return hmac.compare_digest(_digest(hash_key, key), stored)
    return False  # made under a hash key this server no longer has


def bcrypt_matches(secret: str, key_hash: str) -> bool:
    """The legacy check; separate so the cost of it can be bounded and counted."""
    return bcrypt.checkpw(secret.encode(), key_hash.encode())


def legacy_bcrypt_hash(secret: str) -> str:
    """A key hash as HOMEPOT stored them before the HMAC form (cost
    DEVICE_KEY_BCRYPT_ROUNDS). Nothing creates these any more but tests and
    benchmarks of the migration."""
    salt = bcrypt.gensalt(rounds=settings.DEVICE_KEY_BCRYPT_ROUNDS)
    return bcrypt.hashpw(secret.encode(), salt).decode()


# --- Enrollment tokens and other digests ---------------------------------------------------


def new_enrollment_token() -> str:
    return f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"


def sha256_hex(*parts: str) -> str:
    # NUL-separated so that ("ab", "c") and ("a", "bc") never collide.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
