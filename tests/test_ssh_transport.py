"""The SSH transport against a real sshd (tests/sshd.py) and against peers that
are down, silent, lying or hostile."""

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.ssh.identity import server_key_load
from devices.ssh.transport import (
    CommandTimeout,
    HostKeyMismatch,
    OutputTooLarge,
    SshConnectError,
    SshSession,
    host_key_fingerprint,
    host_key_parse,
    ssh_connect,
)
from tests.sshd import SshServer, ed25519_key_write, ssh_session_open

MAX_OUTPUT = 65_536


@pytest.fixture
def client_key(ssh_identity: Path) -> paramiko.PKey:
    return server_key_load()


def other_ed25519_public_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def offered_text(sshd: SshServer) -> str:
    return " ".join(sshd.host_key.split()[:2])


# --- Commands ---------------------------------------------------------------------------


def test_it_runs_a_command_and_reports_exit_status_stdout_and_stderr(ssh_session: SshSession):
    result = ssh_session.run("echo out; echo err >&2; exit 3", timeout=5, max_output=MAX_OUTPUT)

    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_it_runs_as_the_target_user(ssh_session: SshSession, sshd: SshServer):
    result = ssh_session.run("id -un", timeout=5, max_output=MAX_OUTPUT)

    assert result.stdout.strip() == sshd.username


def test_one_connection_serves_many_commands(ssh_session: SshSession):
    outputs = [
        ssh_session.run(f"echo {n}", timeout=5, max_output=MAX_OUTPUT).stdout for n in range(30)
    ]

    assert outputs == [f"{n}\n" for n in range(30)]


def test_invalid_utf8_is_replaced_not_fatal(ssh_session: SshSession):
    result = ssh_session.run(r"printf 'ok \377\n'", timeout=5, max_output=MAX_OUTPUT)

    assert result.stdout == "ok \ufffd\n"


def test_output_up_to_the_cap_is_read_whole(ssh_session: SshSession):
    result = ssh_session.run(f"head -c {MAX_OUTPUT} /dev/zero", timeout=5, max_output=MAX_OUTPUT)

    assert len(result.stdout) == MAX_OUTPUT


def sleepers(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_hanging_command_times_out_is_killed_and_the_session_goes_on(ssh_session: SshSession):
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        # A compound command: sshd kills the whole process group, not just the shell.
        ssh_session.run("sleep 30.25; echo late", timeout=1, max_output=MAX_OUTPUT)

    assert time.monotonic() - started < 5
    assert wait_until(lambda: not sleepers("30.25")), "the command still runs on the target"
    assert ssh_session.run("echo next", timeout=5, max_output=MAX_OUTPUT).stdout == "next\n"


def test_a_command_that_closes_its_output_and_runs_on_times_out(ssh_session: SshSession):
    with pytest.raises(CommandTimeout):
        ssh_session.run("exec >&- 2>&-; sleep 30.5", timeout=1, max_output=MAX_OUTPUT)

    assert wait_until(lambda: not sleepers("30.5"))


def test_output_over_the_cap_stops_the_command(ssh_session: SshSession):
    with pytest.raises(OutputTooLarge, match=str(MAX_OUTPUT)):
        ssh_session.run("head -c 1000000 /dev/zero", timeout=5, max_output=MAX_OUTPUT)

    assert ssh_session.run("echo next", timeout=5, max_output=MAX_OUTPUT).stdout == "next\n"


def test_endless_output_is_cut_at_the_cap(ssh_session: SshSession):
    with pytest.raises(OutputTooLarge):
        ssh_session.run("yes hostile", timeout=5, max_output=MAX_OUTPUT)


def test_stderr_counts_towards_the_cap(ssh_session: SshSession):
    with pytest.raises(OutputTooLarge):
        ssh_session.run("head -c 100000 /dev/zero >&2", timeout=5, max_output=MAX_OUTPUT)


def test_a_lost_connection_fails_the_next_command_as_a_connect_error(
    sshd: SshServer, client_key: paramiko.PKey
):
    with ssh_session_open(sshd, key=client_key) as opened:
        with sshd.down():
            with pytest.raises(SshConnectError):
                opened.run("echo gone", timeout=5, max_output=MAX_OUTPUT)

    with ssh_session_open(sshd, key=client_key) as reopened:
        assert reopened.run("echo back", timeout=5, max_output=MAX_OUTPUT).stdout == "back\n"


def test_a_connection_lost_while_a_command_runs_is_a_connect_error(
    sshd: SshServer, client_key: paramiko.PKey
):
    with ssh_session_open(sshd, key=client_key) as opened:
        power_cut = threading.Timer(0.5, sshd.stop)
        power_cut.start()
        try:
            with pytest.raises(SshConnectError):
                opened.run("sleep 20.5", timeout=10, max_output=MAX_OUTPUT)
        finally:
            power_cut.join()
            sshd.start()


# --- Host keys --------------------------------------------------------------------------


def test_a_wrong_pinned_key_is_refused_and_nothing_runs(sshd: SshServer, client_key: paramiko.PKey):
    mark = sshd.workdir / "wrong-key-ran"

    with pytest.raises(HostKeyMismatch) as refused:
        with ssh_session_open(sshd, key=client_key, host_key=other_ed25519_public_key()) as opened:
            opened.run(f"touch {mark}", timeout=5, max_output=MAX_OUTPUT)

    assert refused.value.fingerprint == host_key_fingerprint(sshd.host_key)
    assert refused.value.offered == offered_text(sshd)
    assert refused.value.fingerprint in str(refused.value)
    assert not mark.exists()


def test_no_pinned_key_reports_the_offered_key(sshd: SshServer, client_key: paramiko.PKey):
    with pytest.raises(HostKeyMismatch, match="no host key is pinned") as refused:
        ssh_session_open(sshd, key=client_key, host_key="")

    assert refused.value.offered == offered_text(sshd)
    assert host_key_fingerprint(refused.value.offered) == refused.value.fingerprint


def test_a_pinned_key_of_another_type_reports_the_offered_key(
    sshd: SshServer, client_key: paramiko.PKey
):
    rsa = paramiko.RSAKey.generate(2048)

    with pytest.raises(HostKeyMismatch) as refused:
        ssh_session_open(sshd, key=client_key, host_key=f"{rsa.get_name()} {rsa.get_base64()}")

    assert refused.value.offered == offered_text(sshd)


def test_an_invalid_pinned_key_reports_the_offered_key(sshd: SshServer, client_key: paramiko.PKey):
    with pytest.raises(HostKeyMismatch, match="pinned key is invalid") as refused:
        ssh_session_open(sshd, key=client_key, host_key="ssh-ed25519 not-base64!")

    assert refused.value.offered == offered_text(sshd)


def test_the_pinned_key_may_carry_a_comment_and_whitespace(
    sshd: SshServer, client_key: paramiko.PKey
):
    pinned = f"  {offered_text(sshd)}   root@wet-board\n"

    with ssh_session_open(sshd, key=client_key, host_key=pinned) as opened:
        assert opened.run("echo ok", timeout=5, max_output=MAX_OUTPUT).stdout == "ok\n"


def test_the_fingerprint_is_the_one_ssh_keygen_prints(sshd: SshServer, tmp_path: Path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    public_file = tmp_path / "host.pub"
    public_file.write_text(sshd.host_key + "\n")

    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", public_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert printed.split()[1] == host_key_fingerprint(sshd.host_key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "AAAAC3NzaC1lZDI1NTE5AAAAIK",
        "ssh-ed25519 !!!notbase64",
        "ssh-ed25519 AAAA",
        "ssh-foo AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK",
        "ssh-ed25519 " + "A" * 100_000,
    ],
)
def test_host_key_parse_refuses_what_is_not_one_public_key(text: str):
    with pytest.raises(ValueError):
        host_key_parse(text)


def test_host_key_parse_refuses_a_key_under_the_wrong_type(sshd: SshServer):
    blob = sshd.host_key.split()[1]

    with pytest.raises(ValueError):
        host_key_parse(f"ssh-rsa {blob}")


# --- Authentication and reachability -----------------------------------------------------


def test_a_key_the_target_does_not_authorise_is_an_auth_error(sshd: SshServer, tmp_path: Path):
    key_file = tmp_path / "stranger"
    ed25519_key_write(key_file, "stranger")

    with pytest.raises(SshConnectError) as refused:
        ssh_session_open(sshd, key=paramiko.PKey.from_path(key_file))

    assert refused.value.auth is True
    assert "homepot_ssh_keygen" in str(refused.value)


def test_a_board_that_is_off_is_a_quick_connect_error(sshd: SshServer, client_key: paramiko.PKey):
    with sshd.down():
        started = time.monotonic()
        with pytest.raises(SshConnectError, match="refused") as refused:
            ssh_session_open(sshd, key=client_key, timeout=30)
        elapsed = time.monotonic() - started

    assert refused.value.auth is False
    assert elapsed < 30  # refused at once, not waited for


def test_an_unknown_host_name_is_a_connect_error(client_key: paramiko.PKey):
    with pytest.raises(SshConnectError, match="resolve"):
        ssh_connect(
            host="wet-board.invalid",
            port=22,
            username="u",
            host_key="",
            key=client_key,
            timeout=5,
        )


@contextmanager
def fake_peer(behaviour: Callable[[socket.socket], None] | None) -> Iterator[int]:
    """A TCP peer on a free port of 127.0.0.1 that treats each connection with
    `behaviour`; None: it never even accepts (the kernel completes the handshake)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                behaviour(connection)

    thread = threading.Thread(target=serve, daemon=True)
    if behaviour is not None:
        thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        if behaviour is not None:
            thread.join(timeout=10)
        listener.close()


def silent(connection: socket.socket) -> None:
    connection.settimeout(5)
    while connection.recv(4096):  # until the client gives up
        pass


def banner_then_silent(connection: socket.socket) -> None:
    connection.sendall(b"SSH-2.0-OpenSSH_9.9\r\n")
    silent(connection)


def http_server(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def endless_banner(connection: socket.socket) -> None:
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            connection.sendall(b"x" * 4096)
    except OSError:
        pass


def closes_at_once(connection: socket.socket) -> None:
    pass


@pytest.mark.parametrize(
    "behaviour",
    [None, silent, banner_then_silent, http_server, endless_banner, closes_at_once],
    ids=lambda b: getattr(b, "__name__", "never_accepts"),
)
def test_a_peer_that_is_not_a_working_sshd_is_a_connect_error_within_the_timeout(
    behaviour: Callable[[socket.socket], None] | None, client_key: paramiko.PKey
):
    with fake_peer(behaviour) as port:
        started = time.monotonic()
        with pytest.raises(SshConnectError):
            ssh_connect(
                host="127.0.0.1",
                port=port,
                username="u",
                host_key="",
                key=client_key,
                timeout=1,
            )
        elapsed = time.monotonic() - started

    # The connect is bounded by its timeout, whatever the peer does (margin for a busy CI).
    assert elapsed < 2.5
