"""The state directory is the agent's alone: 0700, every file in it 0600,
whatever the umask of whoever started the agent.

Modes are set explicitly (chmod) rather than left to the umask. SQLite gives
its -wal and -shm files the mode of their database file, so a database file
created 0600 here keeps its companions private too.
"""

from __future__ import annotations

import os
from pathlib import Path

from homepot_agent.config import ConfigError

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it 0700; its files 0600."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        # Not ours (a shared directory named by mistake): change nothing there.
        raise ConfigError(f"state_dir: {path} belongs to another user; give the agent its own")
    os.chmod(path, DIR_MODE)
    for child in path.iterdir():
        if child.is_file() and not child.is_symlink():
            os.chmod(child, FILE_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if missing, 0600 either way (before SQLite opens it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    os.chmod(path, FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (a reader never sees half a file), 0600."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.chmod(temporary, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
