"""Generation and checking of device API keys and enrollment tokens.

A device key looks like ``hpk_<key_id>_<secret>``: the public ``key_id`` finds
the one credential row by index, and only the 32-byte ``secret`` is hashed
with bcrypt.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass

import bcrypt
from django.conf import settings

KEY_PREFIX = "hpk"
TOKEN_PREFIX = "het"
_KEY_RE = re.compile(r"^hpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


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


def hash_secret(secret: str) -> str:
    salt = bcrypt.gensalt(rounds=settings.DEVICE_KEY_BCRYPT_ROUNDS)
    return bcrypt.hashpw(secret.encode(), salt).decode()


def secret_matches(secret: str, key_hash: str) -> bool:
    return bcrypt.checkpw(secret.encode(), key_hash.encode())


def new_enrollment_token() -> str:
    return f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"


def sha256_hex(*parts: str) -> str:
    # NUL-separated so that ("ab", "c") and ("a", "bc") never collide.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
