"""The durable inbox and outbox (DESIGN §5): nothing a user sent or an agent said is lost.

Life of a message:

    put_inbound()  -> PENDING   stored before it is routed; the platform offset moves after this
    finish()       -> DONE      the worker said Done; its replies are already in the outbox
    delivered()    -> ACKED     every reply of a DONE message reached the platform

At start the daemon redelivers every PENDING message (workers drop the ones they already
ran) and every undelivered reply.  ACKED rows are kept a while so that a platform
re-sending an update it already gave us (same `external_id`) is recognised, then pruned.
A reply a platform takes in several parts (text chunks, then files) keeps in `parts_sent`
how many of them it has accepted, so a delivery cut short (a crash, a platform restarted
by a reload) goes on from the next part instead of sending the first ones again.
Beside the messages, `read_position` keeps per place (a Discord channel) the newest
platform id read there: where to read back from what was said while disconnected.

SQLite in WAL mode with synchronous=NORMAL: a commit survives a crash of the process,
which is the failure this guards against; calls are short and made from the event loop
thread, which is cheaper than a hop to a worker thread for sub-millisecond writes.

A reply and its message's "done" are grouped writes (hermesd/spoolwrites.py): they are
committed with the others of the same event-loop pass, before anything that depends on
them is sent.
"""

from __future__ import annotations

import os
import sqlite3
import time
from enum import IntEnum
from pathlib import Path

import msgspec

from hermesd import wal
from hermesd.spoolwrites import SpoolUnavailable, Writes


class State(IntEnum):
    PENDING = 0
    DONE = 1
    ACKED = 2


class Incoming(msgspec.Struct, frozen=True, kw_only=True):
    """A message as a platform adapter hands it over, before the spool numbers it."""

    platform: str
    external_id: str  # the platform's own id (update id, client id): repeats are recognised
    session_key: str
    text: str
    sender: str = ""
    agent: str | None = None  # pinned by the sender (local chat, cron, another agent)
    depth: int = 0  # agent-to-agent hops that led to this message


class Inbound(Incoming, frozen=True, kw_only=True):
    msg_id: int


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    reply_id: int
    msg_id: int
    seq: int
    platform: str
    session_key: str
    agent: str
    text: str
    files: tuple[str, ...] = ()  # absolute paths, checked when the reply was stored


_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (
    msg_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    session_key TEXT NOT NULL,
    sender      TEXT NOT NULL,
    agent       TEXT,
    depth       INTEGER NOT NULL DEFAULT 0,
    routed_to   TEXT,
    text        TEXT NOT NULL,
    received_at REAL NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    UNIQUE (platform, external_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    reply_id     INTEGER PRIMARY KEY,
    msg_id       INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    platform     TEXT NOT NULL,
    session_key  TEXT NOT NULL,
    agent        TEXT NOT NULL,
    text         TEXT NOT NULL,
    files        TEXT,
    delivered_at REAL,
    parts_sent   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (msg_id, seq)
);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS read_position (
    platform TEXT NOT NULL,
    place    TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (platform, place)
);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS inbound_pending ON inbound (msg_id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS inbound_conversation ON inbound (session_key, platform, routed_to);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (reply_id) WHERE delivered_at IS NULL;
"""
"""Made after `_migrate`: an index may name a column an earlier version's table lacks."""

_ADDED_COLUMNS = {
    "inbound": {"depth": "INTEGER NOT NULL DEFAULT 0", "routed_to": "TEXT"},
    "outbox": {"files": "TEXT", "parts_sent": "INTEGER NOT NULL DEFAULT 0"},
}
"""Columns added to a table after its first version, with their definitions (a row from
before gets the default: no hops, no agent known, no files, no part sent)."""

_INBOUND_COLUMNS = "msg_id, platform, external_id, session_key, text, sender, agent, depth"
_OUTGOING_COLUMNS = "reply_id, msg_id, seq, platform, session_key, agent, text, files"
_FILES = msgspec.json.Decoder(tuple[str, ...])


def _inbound(row: tuple) -> Inbound:
    return Inbound(
        msg_id=row[0], platform=row[1], external_id=row[2], session_key=row[3],
        text=row[4], sender=row[5], agent=row[6], depth=row[7],
    )  # fmt: skip


def _outgoing(row: tuple) -> Outgoing:
    return Outgoing(
        reply_id=row[0], msg_id=row[1], seq=row[2], platform=row[3],
        session_key=row[4], agent=row[5], text=row[6], files=_FILES.decode(row[7]) if row[7] else (),
    )  # fmt: skip


class Spool:
    """One SQLite file, `<state_dir>/spool.db`, owned by the parent process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolUnavailable(f"cannot open the spool in {self.path.parent}: {exc}") from None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        wal.configure(self._db)
        self._writes = Writes(self._db, self.path)
        fresh = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'inbound'"
        ).fetchone() is None
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.executescript(_INDEXES)
        if fresh:
            # Message ids start at the creation time in microseconds, so a spool that is
            # deleted and recreated never reuses an id a worker remembers as handled.
            self._db.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('inbound', ?)",
                (time.time_ns() // 1000,),
            )

    def _migrate(self) -> None:
        """Bring a spool.db made by an earlier version up to this schema (CREATE TABLE IF
        NOT EXISTS leaves an existing table as it was).  Each step adds what is missing, so
        running them again changes nothing."""
        for table, columns in _ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        # Replaced by inbound_pending: the DONE rows it also held cost each delivery one
        # more page to write, and only PENDING ones are ever looked up by state.
        self._db.execute("DROP INDEX IF EXISTS inbound_open")

    # ---------------------------------------------------------------- health

    def health(self, min_free: int) -> str | None:
        """Why the spool cannot take writes now, or None; also clears or sets `fault`.

        Free space is checked first: below `min_free` the daemon stops accepting before
        SQLite fails mid-write (a WAL can reuse its pages and hide a full disk for a while).
        A fault left by a failed write is cleared only by a write that succeeds."""
        try:
            fs = os.statvfs(self.path.parent)
        except OSError as exc:
            self.fault = f"cannot check {self.path.parent}: {exc.strerror}"
            return self.fault
        free = fs.f_bavail * fs.f_frsize
        if fs.f_flag & os.ST_RDONLY:
            self.fault = f"{self.path.parent} is on a read-only file system"
        elif free < min_free:
            self.fault = (f"disk nearly full: {free >> 10} KiB free in {self.path.parent}, "
                          f"min_free_space is {min_free >> 10} KiB")
        elif self.fault is not None:
            try:
                with self._writes.transaction():
                    self._db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (time.time(),))
                self.fault = None
            except SpoolUnavailable:
                pass
        return self.fault

    @property
    def fault(self) -> str | None:
        """Why writes fail, until one succeeds again."""
        return self._writes.fault

    @fault.setter
    def fault(self, reason: str | None) -> None:
        self._writes.fault = reason

    def commit(self) -> None:
        """Commit the grouped writes now: called before anything that depends on them is
        sent.  Raises SpoolUnavailable if that fails, and they are lost (`Writes.commit`)."""
        self._writes.commit()

    @property
    def rollbacks(self) -> int:
        """Failed writes that took grouped writes with them."""
        return self._writes.rollbacks

    def close(self) -> None:
        try:
            self.commit()
        except SpoolUnavailable:
            pass  # lost: what they recorded is done again (hermesd/spoolwrites.py)
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the WAL stays and is replayed at the next open
        self._db.close()

    # ---------------------------------------------------------------- inbound

    def put_inbound(self, message: Incoming, routed_to: str | None) -> tuple[Inbound, bool]:
        """Store a message before anything acts on it.  Returns the entry and whether it is
        new: a platform repeating an update (same `external_id`) gets the stored entry back.
        `routed_to` records which agent the conversation was given to (see has_conversation)."""
        with self._writes.transaction():
            cursor = self._db.execute(
                "INSERT INTO inbound (platform, external_id, session_key, sender, agent, depth,"
                " routed_to, text, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, external_id) DO NOTHING",
                (message.platform, message.external_id, message.session_key, message.sender,
                 message.agent, message.depth, routed_to, message.text, time.time()),
            )  # fmt: skip
        if cursor.rowcount:
            return Inbound(msg_id=cursor.lastrowid or 0, **msgspec.structs.asdict(message)), True
        row = self._db.execute(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE platform = ? AND external_id = ?",
            (message.platform, message.external_id),
        ).fetchone()
        return _inbound(row), False

    def get(self, msg_id: int) -> Inbound | None:
        row = self._db.execute(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE msg_id = ?", (msg_id,)
        ).fetchone()
        return None if row is None else _inbound(row)

    def pending(self) -> list[Inbound]:
        """Messages no worker has finished, oldest first: to redeliver at start."""
        rows = self._db.execute(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE state = 0 ORDER BY msg_id"
        )
        return [_inbound(row) for row in rows]

    def has_conversation(self, platform: str, session_key: str, agent: str) -> bool:
        """Was a message of this conversation ever given to `agent`?  (An agent may only
        speak up unasked, e.g. from a cron job, where it was spoken to.)"""
        return self._db.execute(
            "SELECT 1 FROM inbound WHERE session_key = ? AND platform = ? AND routed_to = ?"
            " LIMIT 1",
            (session_key, platform, agent),
        ).fetchone() is not None

    def replies_of(self, msg_id: int) -> list[str]:
        rows = self._db.execute("SELECT text FROM outbox WHERE msg_id = ? ORDER BY seq", (msg_id,))
        return [row[0] for row in rows]

    def acked(self, msg_id: int) -> bool:
        """Is every reply of `msg_id` delivered (or was it pruned, long after)?"""
        row = self._db.execute("SELECT state FROM inbound WHERE msg_id = ?", (msg_id,)).fetchone()
        return row is None or row[0] == State.ACKED

    def open_messages(self, platform: str, session_key: str) -> list[int]:
        """Ids of this conversation's messages whose replies have not all been delivered."""
        rows = self._db.execute(
            "SELECT msg_id FROM inbound WHERE state < 2 AND platform = ? AND session_key = ?"
            " ORDER BY msg_id",
            (platform, session_key),
        )
        return [row[0] for row in rows]

    def finish(self, msg_id: int, error: str | None = None) -> bool:
        """The worker is done with `msg_id`.  Returns True if that also acked it (no reply
        is waiting for delivery).  A grouped write (hermesd/spoolwrites.py): the caller sends
        nothing that says so before `commit()`."""
        with self._writes.transaction(grouped=True):
            row = self._db.execute(
                "UPDATE inbound SET error = ?, state = CASE WHEN EXISTS (SELECT 1 FROM outbox"
                " WHERE msg_id = ? AND delivered_at IS NULL) THEN 1 ELSE 2 END"
                " WHERE msg_id = ? AND state = 0 RETURNING state",
                (error, msg_id, msg_id),
            ).fetchone()
        return row is not None and row[0] == State.ACKED

    def read_positions(self, platform: str) -> dict[str, int]:
        """Per place (a Discord channel), the newest platform id read there: where to fetch
        what was said while the daemon was not connected from."""
        rows = self._db.execute(
            "SELECT place, position FROM read_position WHERE platform = ?", (platform,)
        )
        return dict(rows.fetchall())

    def advance(self, platform: str, place: str, position: int) -> None:
        """Record that `place` was read up to `position`; a lower one than stored changes nothing."""
        with self._writes.transaction():
            self._db.execute(
                "INSERT INTO read_position (platform, place, position) VALUES (?, ?, ?)"
                " ON CONFLICT (platform, place) DO UPDATE SET position = excluded.position"
                " WHERE excluded.position > position",
                (platform, place, position),
            )

    # ---------------------------------------------------------------- outbox

    def put_reply(
        self, *, msg_id: int, seq: int, agent: str, text: str, files: tuple[str, ...] = ()
    ) -> Outgoing | None:
        """Store a reply for delivery to the conversation and platform its message came
        from (never to one the worker names: a worker cannot post elsewhere).  Returns None
        for a (msg_id, seq) already stored: a worker re-running a message it had begun.
        A grouped write (hermesd/spoolwrites.py): the reply is sent only after `commit()`."""
        with self._writes.transaction(grouped=True):
            row = self._db.execute(
                "INSERT INTO outbox (msg_id, seq, platform, session_key, agent, text, files)"
                " SELECT ?, ?, platform, session_key, ?, ?, ? FROM inbound WHERE msg_id = ?"
                f" AND state = 0 ON CONFLICT (msg_id, seq) DO NOTHING RETURNING {_OUTGOING_COLUMNS}",
                (msg_id, seq, agent, text, msgspec.json.encode(files).decode() if files else None,
                 msg_id),
            ).fetchone()  # fmt: skip
            if row is not None:
                self._writes.grouped_reply(msg_id)
        return None if row is None else _outgoing(row)

    def undelivered(self, platform: str | None = None, session_key: str | None = None) -> list[Outgoing]:
        """Replies not yet delivered, oldest first; all of them, or one conversation's."""
        query = f"SELECT {_OUTGOING_COLUMNS} FROM outbox WHERE delivered_at IS NULL"
        if platform is not None:
            query += " AND platform = ? AND session_key = ?"
        rows = self._db.execute(
            query + " ORDER BY reply_id", () if platform is None else (platform, session_key)
        )
        return [_outgoing(row) for row in rows]

    def progress(self, reply: Outgoing) -> int | None:
        """How many parts of the reply the platform has accepted so far, read just before
        a delivery; None once it is delivered (a reply queued again, for a client that came
        back, may have been delivered meanwhile) or gone."""
        row = self._db.execute(
            "SELECT delivered_at IS NOT NULL, parts_sent FROM outbox WHERE reply_id = ?",
            (reply.reply_id,),
        ).fetchone()
        return None if row is None or row[0] else row[1]

    def parts_sent(self, reply: Outgoing, count: int) -> None:
        """The platform has accepted the reply's first `count` parts.  One small UPDATE of
        one row (a WAL append, no fsync), made after every part."""
        with self._writes.transaction():
            self._db.execute(
                "UPDATE outbox SET parts_sent = ? WHERE reply_id = ?", (count, reply.reply_id)
            )

    def delivered(self, reply: Outgoing) -> bool:
        """Mark a reply delivered; returns True if that acked its message."""
        with self._writes.transaction():
            self._db.execute(
                "UPDATE outbox SET delivered_at = ? WHERE reply_id = ?",
                (time.time(), reply.reply_id),
            )
            return self._ack_if_delivered(reply.msg_id)

    # ---------------------------------------------------------------- upkeep

    def checkpoint(self) -> None:
        """Copy the WAL into the database file.  Safe to call from another thread: it uses
        a connection of its own, and PASSIVE never blocks the writer.  A failure is left
        for `health` to report: the WAL keeps every commit until a checkpoint succeeds."""
        try:
            wal.checkpoint(self.path)
        except (sqlite3.Error, OSError):
            pass

    def prune(self, older_than: float) -> int:
        """Forget acked messages received before `older_than` (a time.time() value)."""
        with self._writes.transaction():
            self._db.execute(
                "DELETE FROM outbox WHERE msg_id IN (SELECT msg_id FROM inbound"
                " WHERE state = 2 AND received_at < ?)",
                (older_than,),
            )
            return self._db.execute(
                "DELETE FROM inbound WHERE state = 2 AND received_at < ?", (older_than,)
            ).rowcount

    def _ack_if_delivered(self, msg_id: int) -> bool:
        return bool(
            self._db.execute(
                "UPDATE inbound SET state = 2 WHERE msg_id = ? AND state = 1 AND NOT EXISTS"
                " (SELECT 1 FROM outbox WHERE msg_id = ? AND delivered_at IS NULL)",
                (msg_id, msg_id),
            ).rowcount
        )
