"""One SSH connection to a target, trusting its pinned host key and nothing else.

paramiko with the pinned key as the only known host key (no system known_hosts),
a RejectPolicy for everything else, our own key only (no agent, no key lookup, no
password). Every step is bounded: the connection by one deadline, each command by
its timeout. A command past its timeout or its output cap is killed on the target
(the SSH "signal" request: sshd kills its process group) and its channel closed;
the connection serves the next command.
"""

import base64
import binascii
import hashlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message


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


# --- Host keys -----------------------------------------------------------------------


def host_key_parse(text: str) -> paramiko.PKey:
    """A pinned key in OpenSSH public-key format ("ssh-ed25519 AAAA... [comment]")."""
    fields = text.strip().split()
    if len(fields) < 2 or "\n" in text.strip():
        raise ValueError(
            "A host key is one line: '<type> <base64> [comment]', "
            "as in the host's /etc/ssh/ssh_host_ed25519_key.pub."
        )
    key_type, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The host key's second field is not base64.") from None
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
    except paramiko.UnknownKeyType:
        raise ValueError(f"Unsupported host key type {key_type[:40]!r}.") from None
    except (paramiko.SSHException, ValueError, TypeError, IndexError):
        raise ValueError(f"The host key is not a valid {key_type} key.") from None
    # The blob names its own type: a key pasted under the wrong type is refused.
    if key.get_name() != key_type:
        raise ValueError(f"The host key says {key_type!r} but holds a {key.get_name()} key.")
    return key


def host_key_text(key: paramiko.PKey) -> str:
    """OpenSSH one-line format without comment: "ssh-ed25519 AAAA..."."""
    return f"{key.get_name()} {key.get_base64()}"


def host_key_fingerprint(text_or_key: str | paramiko.PKey) -> str:
    """ "SHA256:" and the unpadded base64 digest, as `ssh-keygen -l` prints it."""
    key = host_key_parse(text_or_key) if isinstance(text_or_key, str) else text_or_key
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_key_mismatch(offered: paramiko.PKey, *, reason: str) -> HostKeyMismatch:
    fingerprint = host_key_fingerprint(offered)
    return HostKeyMismatch(
        f"The host offered the key {fingerprint}, {reason}: nothing was run.",
        offered=host_key_text(offered),
        fingerprint=fingerprint,
    )


class _CaptureOfferedKey(paramiko.RejectPolicy):
    """Rejects an unknown host key, reporting which key it was."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise _host_key_mismatch(key, reason=self.reason)


# --- Deadlines ------------------------------------------------------------------------


@contextmanager
def _deadline(seconds: float, expire: Callable[[], None]) -> Iterator[threading.Event]:
    """Calls `expire` (from a timer thread) if the block still runs after `seconds`;
    the event yielded tells the block that it did. For the paramiko calls that wait
    without a timeout of their own."""
    expired = threading.Event()
    lock = threading.Lock()
    finished = False

    def fire() -> None:
        with lock:
            if not finished:
                expired.set()
                expire()

    timer = threading.Timer(max(seconds, 0.0), fire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        with lock:
            finished = True
        timer.cancel()


def _socket_abort(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --- Commands -------------------------------------------------------------------------

_READ_CHUNK = 32_768


def _channel_kill(channel: paramiko.Channel) -> None:
    """Ask sshd to SIGKILL the command's process group (RFC 4254 6.9). Closing the
    channel alone leaves the command running on the target (a hung `cat`, a
    `sleep`), and each round would add one. paramiko has no public call for it."""
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string("KILL")
    try:
        channel.transport._send_user_message(message)
    except (paramiko.SSHException, OSError, EOFError):
        pass  # the connection is gone, and the command with it


class _Output:
    """stdout and stderr as read so far, within a cap on both together."""

    def __init__(self, max_output: int) -> None:
        self.max_output = max_output
        self.stdout = bytearray()
        self.stderr = bytearray()

    def read_ready(self, channel: paramiko.Channel) -> None:
        while channel.recv_ready() and not self.over_cap:
            self.stdout += channel.recv(self._room())
        while channel.recv_stderr_ready() and not self.over_cap:
            self.stderr += channel.recv_stderr(self._room())

    def _room(self) -> int:
        # One byte past the cap is enough to know it is exceeded.
        return max(1, min(_READ_CHUNK, self.max_output + 1 - self.size))

    @property
    def size(self) -> int:
        return len(self.stdout) + len(self.stderr)

    @property
    def over_cap(self) -> bool:
        return self.size > self.max_output


class SshSession:
    """One authenticated connection; `run()` opens a channel per command.
    A context manager: leaving it closes the connection."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self._client = client

    def __enter__(self) -> "SshSession":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @property
    def active(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, command: str, *, timeout: float, max_output: int) -> CommandResult:
        """Run one command line (by the target user's login shell) and wait for it.

        Raises CommandTimeout (killed after `timeout` seconds), OutputTooLarge (killed
        after more than `max_output` bytes of stdout and stderr together),
        SshConnectError (the connection is lost)."""
        deadline = time.monotonic() + timeout
        channel = self._channel_open(command, deadline)
        try:
            output = self._output_collect(channel, deadline, max_output)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status == -1 and not self.active:
            raise SshConnectError("The connection was lost while the command ran.")
        return CommandResult(
            exit_status=status,
            stdout=output.stdout.decode("utf-8", errors="replace"),
            stderr=output.stderr.decode("utf-8", errors="replace"),
        )

    def _channel_open(self, command: str, deadline: float) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SshConnectError("The connection is closed.")
        try:
            channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.01))
        except (paramiko.SSHException, OSError, EOFError) as error:
            if not transport.is_active():
                raise SshConnectError(f"The connection was lost: {error}") from None
            raise SshConnectError(f"The host refused a new session: {error}") from None
        # exec_command waits for the host's answer without a timeout of its own.
        with _deadline(deadline - time.monotonic(), channel.close) as expired:
            try:
                channel.exec_command(command)
            except (paramiko.SSHException, OSError, EOFError) as error:
                channel.close()
                if expired.is_set():
                    raise CommandTimeout("The host did not start the command in time.") from None
                if not transport.is_active():
                    raise SshConnectError(f"The connection was lost: {error}") from None
                raise SshConnectError(f"The host refused the command: {error}") from None
        if expired.is_set():  # the timer closed the channel just as the host answered
            raise CommandTimeout("The host did not start the command in time.")
        return channel

    def _output_collect(
        self, channel: paramiko.Channel, deadline: float, max_output: int
    ) -> _Output:
        output = _Output(max_output)
        # Until end of output: the channel's pipe wakes poll on stdout, stderr, EOF and
        # close (poll, not select: a busy worker's descriptors may pass 1024).
        poller = select.poll()
        poller.register(channel, select.POLLIN)
        while True:
            # Seen before reading: the output that came before the EOF is then read.
            ended = channel.eof_received or channel.closed
            output.read_ready(channel)
            if output.over_cap:
                _channel_kill(channel)
                raise OutputTooLarge(f"The command wrote more than {max_output} bytes.")
            if ended:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._timeout(channel)
            poller.poll(remaining * 1000)
        # The exit status follows the end of output (a command may close its output
        # and run on: that is waited for too, within the deadline).
        if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
            self._timeout(channel)
        return output

    @staticmethod
    def _timeout(channel: paramiko.Channel) -> None:
        _channel_kill(channel)
        raise CommandTimeout("The command did not finish within its timeout.")


# --- Connecting -----------------------------------------------------------------------


def ssh_connect(
    *,
    host: str,
    port: int,
    username: str,
    host_key: str,
    key: paramiko.PKey,
    timeout: float,
) -> SshSession:
    """One authenticated connection within `timeout` seconds, or HostKeyMismatch
    (nothing run; an empty `host_key` always mismatches and reports the offered
    key) or SshConnectError (`auth` set when the host refused our key)."""
    deadline = time.monotonic() + timeout
    client = _client_pinned(host, port, host_key)
    sock = _socket_connect(host, port, timeout)
    try:
        with _deadline(deadline - time.monotonic(), lambda: _socket_abort(sock)) as expired:
            _client_connect(client, sock, host, port, username, key, timeout, expired)
    except BaseException:
        client.close()
        sock.close()
        raise
    return SshSession(client)


def _client_pinned(host: str, port: int, host_key: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()  # knows no host key until one is added
    if not host_key.strip():
        client.set_missing_host_key_policy(_CaptureOfferedKey("but no host key is pinned"))
        return client
    try:
        pinned = host_key_parse(host_key)
    except ValueError as error:
        # Pinned nothing usable: the offered key is reported, for an operator to accept.
        client.set_missing_host_key_policy(
            _CaptureOfferedKey(f"the pinned key is invalid ({error})")
        )
        return client
    client.set_missing_host_key_policy(_CaptureOfferedKey("not the pinned one"))
    # paramiko looks a non-22 port up as "[host]:port".
    name = host if port == 22 else f"[{host}]:{port}"
    client.get_host_keys().add(name, pinned.get_name(), pinned)
    return client


def _socket_connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as error:
        raise SshConnectError(f"Cannot resolve {host!r}: {error.strerror}.") from None
    except TimeoutError:
        raise SshConnectError(f"No answer from {host}:{port} within {timeout:g} s.") from None
    except ConnectionRefusedError:
        raise SshConnectError(f"{host}:{port} refused the connection.") from None
    except OSError as error:
        raise SshConnectError(f"Cannot reach {host}:{port}: {error.strerror}.") from None


def _client_connect(
    client: paramiko.SSHClient,
    sock: socket.socket,
    host: str,
    port: int,
    username: str,
    key: paramiko.PKey,
    timeout: float,
    expired: threading.Event,
) -> None:
    try:
        client.connect(
            host,
            port=port,
            username=username,
            pkey=key,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except HostKeyMismatch:
        raise
    except paramiko.BadHostKeyException as error:
        raise _host_key_mismatch(error.key, reason="not the pinned one") from None
    except paramiko.AuthenticationException:
        raise SshConnectError(
            f"{username}@{host} refused the server's key: add the output of "
            "`manage.py homepot_ssh_keygen` to that user's authorized_keys.",
            auth=True,
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as error:
        if expired.is_set():
            raise SshConnectError(
                f"No SSH session with {host}:{port} within {timeout:g} s."
            ) from None
        raise SshConnectError(
            f"SSH with {host}:{port} failed: {str(error) or type(error).__name__}."
        ) from None
    if expired.is_set():  # connected, but the socket was shut at the deadline
        raise SshConnectError(f"No SSH session with {host}:{port} within {timeout:g} s.")
