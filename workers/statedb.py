"""The agent's `state.db` (SQLite, WAL): one connection, one schema, opened on first use.

Opening it lazily keeps an agent that has not been spoken to cheap (a SQLite connection
costs a worker about 1 MiB of private memory).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hermesd import wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (
    msg_id     INTEGER PRIMARY KEY,
    replies    BLOB NOT NULL,
    handled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id                INTEGER PRIMARY KEY,
    session_key       TEXT NOT NULL,
    started_at        REAL NOT NULL,
    ended_at          REAL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_key ON sessions (session_key, id);
CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER NOT NULL REFERENCES sessions (id),
    role         TEXT NOT NULL,
    content      TEXT,
    tool_calls   TEXT,
    tool_call_id TEXT,
    name         TEXT,
    msg_id       INTEGER,
    created_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session_id, id);
CREATE INDEX IF NOT EXISTS messages_by_attempt ON messages (session_id, msg_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    content, content = 'messages', content_rowid = 'id'
);
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages
WHEN new.content IS NOT NULL AND new.role IN ('user', 'assistant') BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages
WHEN old.content IS NOT NULL AND old.role IN ('user', 'assistant') BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TABLE IF NOT EXISTS cron_jobs (
    id          INTEGER PRIMARY KEY,
    session_key TEXT NOT NULL,
    platform    TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    next_run    REAL NOT NULL,
    created_at  REAL NOT NULL
);
"""


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._checkpointed_changes = 0

    @property
    def db(self) -> sqlite3.Connection:
        if self._connection is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            wal.configure(db)  # checkpoints: `checkpoint`, off the event loop
            db.executescript(SCHEMA)
            self._connection = db
        return self._connection

    def needs_checkpoint(self) -> bool:
        """Anything written since the last checkpoint?"""
        return self._connection is not None and self._connection.total_changes != self._checkpointed_changes

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (safe from a thread: see hermesd.wal)."""
        assert self._connection is not None
        changes = self._connection.total_changes
        wal.checkpoint(self.path)
        self._checkpointed_changes = changes

    def transaction(self) -> sqlite3.Connection:
        """`with state.transaction():` groups statements; commits or rolls back."""
        self.db.execute("BEGIN")
        return self.db
