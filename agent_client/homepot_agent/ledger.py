"""The durable record of the commands this device has taken on.

One SQLite row per command id, written before anything runs:

* ``claim`` inserts the row; a redelivered id finds it and is never run twice,
  even after the agent (or the machine) restarted.
* ``mark_started`` notes that the server took the ack and the command is about
  to run. A claim without it never ran (``release`` forgets it, and so does
  ``recover`` at start-up); a started command without a result was cut off by
  a crash, and ``recover`` records it ``failed`` instead of running it again.
* ``record_result`` keeps the report to send; ``unsent`` gives it back until the
  server took it (``mark_sent``), so a result survives a restart.
* ``note_reboot`` keeps the boot id from before a reboot; the reboot stays
  pending until a final (not ``in_progress``) result is recorded for it.

Writes are synchronous=FULL: a claim must be on disk before the command runs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from homepot_agent.files import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    command_id     TEXT PRIMARY KEY,
    started_at     REAL NOT NULL,
    status         TEXT,
    report         TEXT,
    report_seq     INTEGER,
    sent           INTEGER NOT NULL DEFAULT 0,
    sent_at        REAL,
    reboot_boot_id TEXT,
    started        INTEGER NOT NULL DEFAULT 0
)
"""
# A ledger from before `started` existed: its claims may have run, so they count as started.
_ADD_STARTED = "ALTER TABLE commands ADD COLUMN started INTEGER NOT NULL DEFAULT 1"
IN_PROGRESS = "in_progress"
INTERRUPTED = (
    "the agent stopped (crash, kill or power loss) while this command ran, before its "
    "result was recorded; not run again"
)


class CommandLedger:
    def __init__(self, path: Path) -> None:
        self.path = private_file(Path(path))
        self._lock = threading.Lock()
        # Autocommit; multi-statement changes open their own transaction.
        self._db = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(commands)")}
        if "started" not in columns:
            self._db.execute(_ADD_STARTED)

    # --- running a command at most once ------------------------------------------------

    def claim(self, command_id: str) -> bool:
        """Record that the command started; False if this id was ever seen here."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO commands (command_id, started_at) VALUES (?, ?)",
                (command_id, time.time()),
            )
            return cursor.rowcount == 1

    def mark_started(self, command_id: str) -> None:
        """The server took the ack: the command runs now (on disk before it does)."""
        with self._lock:
            self._db.execute("UPDATE commands SET started = 1 WHERE command_id = ?", (command_id,))

    def started_without_result(self, command_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT started, report FROM commands WHERE command_id = ?", (command_id,)
            ).fetchone()
        return bool(row and row[0] and row[1] is None)

    def release(self, command_id: str) -> None:
        """Forget a claim whose command never started (its ack did not get through),
        so that a redelivery may run it."""
        with self._lock:
            self._db.execute(
                "DELETE FROM commands WHERE command_id = ? AND report IS NULL AND started = 0",
                (command_id,),
            )

    def recover(self, executed_at: str) -> list[str]:
        """At start-up: claims that never started are forgotten; commands that
        started and have no result were cut off, and are recorded ``failed``
        (sent with the first poll). The ids recorded failed."""
        report = {
            "status": "failed",
            "result": {},
            "error": INTERRUPTED,
            "executed_at": executed_at,
        }
        with self._lock:
            self._db.execute("DELETE FROM commands WHERE started = 0 AND report IS NULL")
            cut_off = [
                row[0]
                for row in self._db.execute(
                    "SELECT command_id FROM commands WHERE started = 1 AND report IS NULL"
                )
            ]
        for command_id in cut_off:
            self.record_result(command_id, report)
        return cut_off

    def report_of(self, command_id: str) -> dict[str, Any] | None:
        """The last report recorded for the command, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT report FROM commands WHERE command_id = ?", (command_id,)
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    # --- results owed to the server ----------------------------------------------------

    def record_result(self, command_id: str, report: dict[str, Any]) -> None:
        """Keep the report to send; a later report for the same id replaces it."""
        text = json.dumps(report, default=str)
        status = report.get("status")
        with self._transaction():
            self._ensure_row(command_id)
            self._db.execute(
                "UPDATE commands SET report = ?, status = ?, sent = 0, sent_at = NULL,"
                " report_seq = (SELECT COALESCE(MAX(report_seq), 0) + 1 FROM commands)"
                " WHERE command_id = ?",
                (text, status if isinstance(status, str) else None, command_id),
            )

    def unsent(self) -> list[tuple[str, dict[str, Any]]]:
        """Results recorded but not yet taken by the server, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT command_id, report FROM commands"
                " WHERE report IS NOT NULL AND sent = 0 ORDER BY report_seq"
            ).fetchall()
        return [(command_id, json.loads(report)) for command_id, report in rows]

    def mark_sent(self, command_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE commands SET sent = 1, sent_at = ? WHERE command_id = ?",
                (time.time(), command_id),
            )

    # --- reboots -----------------------------------------------------------------------

    def note_reboot(self, command_id: str, boot_id_before: str) -> None:
        with self._transaction():
            self._ensure_row(command_id)
            self._db.execute(
                "UPDATE commands SET reboot_boot_id = ? WHERE command_id = ?",
                (boot_id_before, command_id),
            )

    def pending_reboot(self) -> tuple[str, str] | None:
        """(command_id, boot_id_before) of the oldest reboot without a final result."""
        with self._lock:
            row = self._db.execute(
                "SELECT command_id, reboot_boot_id FROM commands"
                " WHERE reboot_boot_id IS NOT NULL AND COALESCE(status, ?) = ?"
                " ORDER BY started_at, rowid LIMIT 1",
                (IN_PROGRESS, IN_PROGRESS),
            ).fetchone()
        return (row[0], row[1]) if row else None

    # --- housekeeping ------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CommandLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_row(self, command_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO commands (command_id, started_at) VALUES (?, ?)",
            (command_id, time.time()),
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
