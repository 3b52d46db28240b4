"""One SSH connection to a target, trusting its pinned host key and nothing else.

(Interface fixed by the lead; implementation by the transport owner.)
"""

from dataclasses import dataclass


class SshError(Exception):
    """Any failure to reach or use a target; `str()` is a message for operators."""


class SshConnectError(SshError):
    """The target could not be reached or refused us (refused, timeout, reset,
    authentication failed). Worth retrying with back-off, except `auth`."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


class HostKeyMismatch(SshError):
    """The host offered a key that is not the pinned one (or none is pinned).
    Nothing was run. `offered` is the offered key in OpenSSH format
    ("ssh-ed25519 AAAA..."), `fingerprint` its SHA256 fingerprint ("SHA256:...")."""

    def __init__(self, message: str, *, offered: str, fingerprint: str) -> None:
        super().__init__(message)
        self.offered = offered
        self.fingerprint = fingerprint


class CommandTimeout(SshError):
    """The command did not finish within its timeout; its channel was closed."""


class OutputTooLarge(SshError):
    """The command wrote more than the output cap; reading stopped there."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


# --- To be implemented (transport owner) -------------------------------------------
#
# def host_key_parse(text: str) -> paramiko.PKey
#     A pinned key in OpenSSH public-key format ("ssh-ed25519 AAAA... [comment]");
#     ValueError with a message for operators if it is not one.
# def host_key_fingerprint(text_or_key: str | paramiko.PKey) -> str   # "SHA256:..."
#
# class SshSession:  (a context manager; closing it closes the connection)
#     def run(self, command: str, *, timeout: float, max_output: int) -> CommandResult
#         raises CommandTimeout, OutputTooLarge, SshConnectError (connection lost)
#
# def ssh_connect(*, host: str, port: int, username: str, host_key: str,
#                 key: paramiko.PKey, timeout: float) -> SshSession
#     paramiko with RejectPolicy and the pinned key only (no system known_hosts, no
#     agent, no key lookup, no password). Raises HostKeyMismatch (nothing run; an
#     empty host_key always mismatches and reports the offered key), SshConnectError.
