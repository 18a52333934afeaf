"""The worker's memory of which messages it has already answered, in its own state.db.

The parent redelivers every message it has no `Done` for (after a worker or daemon crash).
A message recorded here is not run again: its stored replies are sent again instead, and
the parent keeps only the first copy of each (msg_id, seq).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec

_REPLIES = msgspec.msgpack.Encoder()
_DECODE_REPLIES = msgspec.msgpack.Decoder(list[str])
KEEP_SECONDS = 30 * 86400


class Ledger:
    """Opened on first use: an agent that never gets a message never pays for a SQLite
    connection (about 1 MiB of a worker's private memory)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            db = sqlite3.connect(self._path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS handled ("
                " msg_id INTEGER PRIMARY KEY, replies BLOB NOT NULL, handled_at REAL NOT NULL)"
            )
            db.execute("DELETE FROM handled WHERE handled_at < ?", (time.time() - KEEP_SECONDS,))
            self._connection = db
        return self._connection

    def replies_of(self, msg_id: int) -> list[str] | None:
        """The replies already given to `msg_id`, or None if it was never finished."""
        row = self._db.execute("SELECT replies FROM handled WHERE msg_id = ?", (msg_id,)).fetchone()
        return None if row is None else _DECODE_REPLIES.decode(row[0])

    def record(self, msg_id: int, replies: list[str]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO handled (msg_id, replies, handled_at) VALUES (?, ?, ?)",
            (msg_id, _REPLIES.encode(replies), time.time()),
        )
