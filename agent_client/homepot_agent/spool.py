"""A bounded on-disk spool of samples (SQLite): everything collected waits here
until the server has taken it.

* Samples keep the batch id they were first sent under, so a batch whose
  answer was lost is re-sent under the same id and the server stores it once.
  Batch ids are random (128 bits), never derived from row ids: two agents
  started from copies of one state directory never make the same id for
  different samples.
* When the spool is full, the oldest samples go first, and are counted.
* A batch the server will never take (400/413/422, or 500 again and again)
  moves to a quarantine table: kept on disk, counted, shown by
  ``homepot-agent status``, and bounded like the spool.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homepot_agent.files import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT,
    ts REAL NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    ts REAL NOT NULL,
    metrics TEXT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL
);
"""


@dataclass
class Batch:
    batch_id: str
    samples: list[tuple[float, dict[str, float]]]
    last_id: int


def new_batch_id() -> str:
    return secrets.token_hex(16)


class Spool:
    def __init__(self, path: Path, max_samples: int) -> None:
        private_file(path)
        self.max_samples = max_samples
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> str:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return value

    def _count(self, key: str, more: int) -> None:
        self._set_meta(key, str(int(self._meta(key) or 0) + more))

    def add(
        self, samples: list[tuple[float, dict[str, float]]], batch_id: str | None = None
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO samples (batch_id, ts, metrics) VALUES (?, ?, ?)",
                [(batch_id, ts, json.dumps(metrics)) for ts, metrics in samples],
            )
            self._trim("samples", "dropped")

    def _trim(self, table: str, counter: str) -> None:
        excess = self._depth(table) - self.max_samples
        if excess > 0:
            self.db.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._count(counter, excess)

    def _depth(self, table: str) -> int:
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def depth(self) -> int:
        return self._depth("samples")

    def dropped(self) -> int:
        return int(self._meta("dropped") or 0)

    def oldest_batch(self, limit: int) -> Batch | None:
        """The oldest samples as one batch, giving them a batch id if they have none."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            first = self.db.execute(
                "SELECT id, batch_id FROM samples ORDER BY id LIMIT 1"
            ).fetchone()
            if first is None:
                return None
            first_id, batch_id = first
            if batch_id is None:
                ids = [
                    row[0]
                    for row in self.db.execute(
                        "SELECT id FROM samples WHERE batch_id IS NULL AND id >= ?"
                        " ORDER BY id LIMIT ?",
                        (first_id, limit),
                    )
                ]
                batch_id = new_batch_id()
                self.db.execute(
                    "UPDATE samples SET batch_id = ? WHERE id BETWEEN ? AND ? AND batch_id IS NULL",
                    (batch_id, ids[0], ids[-1]),
                )
            rows = self.db.execute(
                "SELECT id, ts, metrics FROM samples WHERE batch_id = ? ORDER BY id", (batch_id,)
            ).fetchall()
        return Batch(
            batch_id=batch_id,
            samples=[(ts, json.loads(metrics)) for _, ts, metrics in rows],
            last_id=rows[-1][0],
        )

    def remove_batch(self, batch_id: str) -> None:
        self.db.execute("DELETE FROM samples WHERE batch_id = ?", (batch_id,))

    def split_batch(self, batch_id: str) -> bool:
        """Give the newer half of a batch a new id (the server refused it as too
        large, so it stored none of it). False if the batch has one sample."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in self.db.execute(
                    "SELECT id FROM samples WHERE batch_id = ? ORDER BY id", (batch_id,)
                )
            ]
            if len(ids) < 2:
                return False
            newer = ids[len(ids) // 2 :]
            self.db.execute(
                "UPDATE samples SET batch_id = ? WHERE batch_id = ? AND id >= ?",
                (new_batch_id(), batch_id, newer[0]),
            )
        return True

    # --- quarantine ------------------------------------------------------------------------

    def quarantine(self, batch_id: str, reason: str) -> None:
        """Move a batch the server will never take out of the way of the others."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO quarantine (batch_id, ts, metrics, reason, quarantined_at)"
                " SELECT batch_id, ts, metrics, ?, ? FROM samples WHERE batch_id = ? ORDER BY id",
                (reason[:500], time.time(), batch_id),
            )
            self.db.execute("DELETE FROM samples WHERE batch_id = ?", (batch_id,))
            self._trim("quarantine", "quarantine_dropped")

    def quarantined(self) -> int:
        """Samples in quarantine."""
        return self._depth("quarantine")

    def quarantine_summary(self) -> dict[str, Any]:
        """What `status` shows: counts, and the newest batch's reason."""
        batches = self.db.execute("SELECT count(DISTINCT batch_id) FROM quarantine").fetchone()[0]
        last = self.db.execute(
            "SELECT batch_id, reason FROM quarantine ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return {
            "quarantined_samples": self.quarantined(),
            "quarantined_batches": batches,
            "quarantine_dropped": int(self._meta("quarantine_dropped") or 0),
            "last_quarantined": {"batch_id": last[0], "reason": last[1]} if last else None,
        }

    def requeue_quarantine(self) -> int:
        """Put every quarantined sample back in the spool (new batch ids); how many."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            moved = self.db.execute(
                "INSERT INTO samples (batch_id, ts, metrics)"
                " SELECT NULL, ts, metrics FROM quarantine ORDER BY id"
            ).rowcount
            self.db.execute("DELETE FROM quarantine")
            self._trim("samples", "dropped")
        return moved

    def close(self) -> None:
        self.db.close()


def wire_samples(samples: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Samples as the API takes them: Unix-seconds timestamps."""
    return [{"ts": round(ts, 3), "metrics": metrics} for ts, metrics in samples]
