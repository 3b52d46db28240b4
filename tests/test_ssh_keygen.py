"""The server's SSH identity: `manage.py homepot_ssh_keygen` and loading the key."""

import io
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command

from devices.ssh.identity import server_key_generate, server_key_load
from devices.ssh.transport import SshError, host_key_parse
from tests.sshd import SshServer, ssh_session_open


@pytest.fixture
def key_file(tmp_path: Path, settings) -> Path:  # noqa: ANN001
    path = tmp_path / "var" / "ssh" / "homepot_ed25519"
    settings.HOMEPOT_SSH_KEY_FILE = str(path)
    return path


def keygen(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("homepot_ssh_keygen", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def authorised(sshd: SshServer) -> Iterator[Callable[[str], None]]:
    """Adds public lines to the test sshd's authorized_keys, restored after the test."""
    before = sshd.authorized_keys.read_text()

    def add(line: str) -> None:
        with sshd.authorized_keys.open("a") as handle:
            handle.write(line + "\n")

    yield add
    sshd.authorized_keys.write_text(before)


def test_it_creates_a_private_key_only_we_can_read(key_file: Path):
    line, where = keygen()

    assert key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700
    assert str(key_file) in where
    assert str(key_file) not in line


def test_the_printed_line_is_a_public_key_with_a_homepot_comment(key_file: Path):
    line, _ = keygen()

    key_type, blob, comment = line.split()
    assert key_type == "ssh-ed25519"
    assert comment.startswith("homepot@")
    assert host_key_parse(line).get_base64() == server_key_load().get_base64() == blob


def test_the_printed_line_authenticates_against_a_real_sshd(
    key_file: Path, sshd: SshServer, authorised: Callable[[str], None]
):
    line, _ = keygen("--comment", "homepot@test")
    authorised(line)

    with ssh_session_open(sshd, key=server_key_load()) as session:
        result = session.run("echo in", timeout=5, max_output=1024)

    assert result.stdout == "in\n"


def test_an_existing_key_is_kept_and_its_line_printed_again(key_file: Path):
    first, _ = keygen()
    private = key_file.read_bytes()

    again, where = keygen()

    assert again == first
    assert key_file.read_bytes() == private
    assert "--force" in where


def test_force_replaces_the_key(key_file: Path):
    first, _ = keygen()

    replaced, where = keygen("--force", "--comment", "homepot@new")

    assert replaced.split()[1] != first.split()[1]
    assert replaced.endswith(" homepot@new")
    assert server_key_load().get_base64() == replaced.split()[1]
    assert mode(key_file) == 0o600
    assert "New key" in where


def test_generate_refuses_to_overwrite_without_force(tmp_path: Path):
    path = tmp_path / "key"
    path.write_text("an operator's key")

    with pytest.raises(FileExistsError):
        server_key_generate(path)

    assert path.read_text() == "an operator's key"


def test_the_file_is_0600_whatever_the_umask(tmp_path: Path):
    previous = os.umask(0)
    try:
        server_key_generate(tmp_path / "key")
    finally:
        os.umask(previous)

    assert mode(tmp_path / "key") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temporary file left


def test_a_missing_key_says_to_run_keygen(key_file: Path):
    with pytest.raises(SshError, match="homepot_ssh_keygen"):
        server_key_load()


def test_an_unreadable_key_is_an_error_that_does_not_quote_the_file(key_file: Path):
    key_file.parent.mkdir(parents=True)
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0IHN0dWZm\n")

    with pytest.raises(SshError) as refused:
        server_key_load()

    assert "c2VjcmV0" not in str(refused.value)
    assert "homepot_ssh_keygen" in str(refused.value)


def test_an_encrypted_key_is_refused(key_file: Path):
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    with pytest.raises(SshError, match="encrypted"):
        server_key_load()


def test_an_operators_rsa_key_is_used_as_it_is(key_file: Path):
    key_file.parent.mkdir(parents=True)
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key_file))

    assert server_key_load().get_name() == "ssh-rsa"
