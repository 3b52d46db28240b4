"""The server's one SSH identity: a private key file (HOMEPOT_SSH_KEY_FILE).

Targets authorise its public key; no SSH secret is stored in the database.
`manage.py homepot_ssh_keygen` creates the key and prints the public line.
"""

import os
import socket
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from devices.ssh.transport import SshError

KEYGEN_HINT = "run `manage.py homepot_ssh_keygen` to create it"


def server_key_path() -> Path:
    return Path(settings.HOMEPOT_SSH_KEY_FILE)


def server_key_load() -> paramiko.PKey:
    """The private key the server logs in with; SshError (for operators) if unusable."""
    path = server_key_path()
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise SshError(f"The server's SSH key {path} does not exist: {KEYGEN_HINT}.") from None
    except (paramiko.PasswordRequiredException, TypeError):
        # An encrypted OpenSSH-format key gets through paramiko as cryptography's
        # TypeError ("Key is password-protected, but password was not provided").
        raise SshError(f"The server's SSH key {path} is encrypted: it must not be.") from None
    except (OSError, paramiko.SSHException, ValueError) as error:
        # Never the file's content: it is a private key.
        reason = error.strerror if isinstance(error, OSError) else type(error).__name__
        raise SshError(
            f"The server's SSH key {path} cannot be read ({reason}): {KEYGEN_HINT}."
        ) from None


def key_comment_default() -> str:
    return f"homepot@{socket.gethostname()}"


def public_key_line(key: paramiko.PKey, comment: str) -> str:
    """ "ssh-ed25519 AAAA... comment", the line for a target's authorized_keys."""
    return f"{key.get_name()} {key.get_base64()} {comment}".rstrip()


def server_public_key(comment: str | None = None) -> str:
    return public_key_line(server_key_load(), comment or key_comment_default())


def server_key_generate(path: Path | str, *, force: bool = False, comment: str = "") -> str:
    """A new ed25519 key in OpenSSH private format at `path` (0600; a missing parent
    directory is created 0700). Refuses to replace an existing key unless `force`.
    Returns the public key line."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists: replacing it needs --force.")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private_file_write(path, private, replace=force)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {comment or key_comment_default()}".rstrip()


def _private_file_write(path: Path, content: bytes, *, replace: bool) -> None:
    """Written beside `path` with mode 0600 from the start, then moved into place:
    never readable by others, never half-written. Without `replace`, a file that
    appeared meanwhile is kept (FileExistsError)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # fails if `path` exists
    finally:
        partial.unlink(missing_ok=True)
