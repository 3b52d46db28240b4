"""A bounded on-disk spool of samples (SQLite), for when the server is away.

Samples keep the batch id they were first sent under, so a batch whose
answer was lost is re-sent under the same id and the server stores it once.
When the spool is full, the oldest samples go first, and are counted.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT,
    ts REAL NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Batch:
    batch_id: str
    samples: list[tuple[float, dict[str, float]]]
    last_id: int


class Spool:
    def __init__(self, path: Path, max_samples: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        # Batch ids start with a per-spool prefix: a new spool file never
        # reuses an id the server has already seen.
        self.prefix = self._meta("prefix") or self._set_meta("prefix", secrets.token_hex(4))

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> str:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return value

    def new_batch_id(self, first: int, last: int) -> str:
        return f"{self.prefix}-{first}-{last}"

    def add(
        self, samples: list[tuple[float, dict[str, float]]], batch_id: str | None = None
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO samples (batch_id, ts, metrics) VALUES (?, ?, ?)",
                [(batch_id, ts, json.dumps(metrics)) for ts, metrics in samples],
            )
            self._trim()

    def _trim(self) -> None:
        excess = self.depth() - self.max_samples
        if excess > 0:
            self.db.execute(
                "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._set_meta("dropped", str(self.dropped() + excess))

    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM samples").fetchone()[0]

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
                batch_id = self.new_batch_id(ids[0], ids[-1])
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

    def close(self) -> None:
        self.db.close()


def wire_samples(samples: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Samples as the API takes them: Unix-seconds timestamps."""
    return [{"ts": round(ts, 3), "metrics": metrics} for ts, metrics in samples]
