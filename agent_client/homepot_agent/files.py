"""The state directory is the agent's alone: 0700, every file in it 0600,
whatever the umask of whoever started the agent.

Modes are set explicitly (chmod) rather than left to the umask. SQLite gives
its -wal and -shm files the mode of their database file, so a database file
created 0600 here keeps its companions private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from homepot_agent.config import ConfigError

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it 0700; its files 0600."""
    if path.is_dir():
        info = path.stat()
        if info.st_mode & stat.S_ISVTX or (info.st_uid != os.getuid() and os.getuid() != 0):
            # A shared directory (/tmp) or someone else's, named by mistake: change nothing.
            raise ConfigError(
                f"state_dir: {path} is shared or another user's; give the agent its own"
            )
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
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
