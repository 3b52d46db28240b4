"""A real OpenSSH server for the tests and the benches: the "WET board".

`SshServer` runs /usr/sbin/sshd in the foreground on a free port of 127.0.0.1 with
its own temporary host key, config, authorized_keys and pid file (never the
system sshd or its config). The client key it accepts is generated per server.
As root (CI) the login user is the dedicated system user `homepot-ssh`; otherwise
it is the current user. Usable outside pytest:

    server = SshServer()
    server.start()
    ... connect to server.host:server.port as server.username with
        server.client_key_file, pinning server.host_key ...
    server.stop()
    server.cleanup()

The pytest fixtures at the end: `sshd` (session), `ssh_identity` and `ssh_session`
(per test).
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.ssh.transport import SshSession, ssh_connect

SSHD = Path("/usr/sbin/sshd")
SSH_USER_AS_ROOT = "homepot-ssh"
STARTUP_SECONDS = 10.0


def sshd_available() -> bool:
    return SSHD.is_file() and os.access(SSHD, os.X_OK)


def ed25519_key_write(path: Path, comment: str) -> str:
    """A new ed25519 key: the private key in OpenSSH format (0600), the public line returned."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(private)
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {comment}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sshd_version() -> tuple[int, int]:
    # "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL ..." on stderr
    output = subprocess.run([SSHD, "-V"], capture_output=True, text=True).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", output)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def ssh_user_ensure() -> pwd.struct_passwd:
    """The login user: `homepot-ssh` when we are root (created if missing), else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        user = pwd.getpwnam(SSH_USER_AS_ROOT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/bin/sh", SSH_USER_AS_ROOT],
            check=True,
        )
        user = pwd.getpwnam(SSH_USER_AS_ROOT)
    # Without PAM, sshd refuses an account whose password field is locked ("!",
    # useradd's default): "*" allows key logins and still no password.
    subprocess.run(["usermod", "-p", "*", SSH_USER_AS_ROOT], check=True)
    # The privilege-separation directory the Debian package would create.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return user


class SshServer:
    """One sshd on 127.0.0.1; `stop()` and `start()` keep its port and keys."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        user = ssh_user_ensure()
        self.username: str = user.pw_name
        self.port: int = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="homepot-sshd-"))
        # sshd reads authorized_keys as the login user: it must reach it.
        self.root.chmod(0o755)
        self.host_key: str = ed25519_key_write(self.root / "host_ed25519", "homepot-test-host")
        self.client_key_file: Path = self.root / "client_ed25519"
        client_public = ed25519_key_write(self.client_key_file, "homepot-test-client")
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text(client_public + "\n")
        self.authorized_keys.chmod(0o644)
        # Where test commands leave marks (timestamps, "I ran" files).
        self.workdir: Path = self.root / "work"
        self.workdir.mkdir()
        os.chown(self.workdir, user.pw_uid, user.pw_gid)
        self.log_file: Path = self.root / "sshd.log"
        self.config_file: Path = self.root / "sshd_config"
        self.config_file.write_text(self._config())
        self._process: subprocess.Popen | None = None

    def _config(self) -> str:
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.root / 'host_ed25519'}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.username}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The files live in a temporary directory, not in the user's home.
            "StrictModes no",
            "PermitRootLogin no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "MaxStartups 300",
            "MaxSessions 64",
            "LogLevel VERBOSE",
        ]
        if sshd_version() >= (9, 8):
            # Tests fail authentication on purpose: the source must not be penalised.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start sshd (again) on the same port with the same keys; return once it answers."""
        if self.alive():
            return
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", self.config_file],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited at start:\n{self.log_tail()}")
            if self._banner_received():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer within {STARTUP_SECONDS} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop sshd and every session it serves (the board loses power)."""
        if self._process is None:
            return
        try:
            # The connections' processes outlive the listener unless killed too.
            sessions = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            sessions = []
        # SIGKILL: the connections drop as the processes exit (their sockets close
        # then, zombie or not), like a board losing power.
        for session in sessions:
            try:
                session.kill()
            except psutil.NoSuchProcess:
                pass
        self._process.kill()
        self._process.wait()
        self._process = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The board is off inside the block and back (same port and keys) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def alive(self) -> bool:
        return (
            self._process is not None and self._process.poll() is None and self._banner_received()
        )

    def _banner_received(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as probe:
                return probe.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- pytest fixtures (registered in tests/conftest.py) ---------------------------------


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """The real sshd of the test session. A test that stops it starts it again
    (`with sshd.down(): ...` does both)."""
    if not sshd_available():
        message = f"{SSHD} is missing (apt-get install openssh-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = SshServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def ssh_identity(sshd: SshServer, settings) -> Path:  # noqa: ANN001 (pytest-django fixture)
    """The server's SSH identity (HOMEPOT_SSH_KEY_FILE) is the key the test sshd accepts."""
    settings.HOMEPOT_SSH_KEY_FILE = str(sshd.client_key_file)
    return sshd.client_key_file


def ssh_session_open(server: SshServer, **overrides: object) -> SshSession:
    """A transport session to `server` with its pinned host key and client key;
    `overrides` replace any ssh_connect argument (host_key, key, timeout...)."""
    options = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "host_key": server.host_key,
        "key": paramiko.PKey.from_path(server.client_key_file),
        "timeout": 5.0,
    } | overrides
    return ssh_connect(**options)


@pytest.fixture
def ssh_session(sshd: SshServer) -> Iterator[SshSession]:
    """An open transport session to the test sshd, closed after the test."""
    with ssh_session_open(sshd) as session:
        yield session
