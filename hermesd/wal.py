"""SQLite in WAL mode as the spool and every agent's state.db use it: commits append to the
WAL, and checkpoints (which fsync) run in a thread rather than on the event loop.

A PASSIVE checkpoint never blocks the writer, but under writes without pause it never
catches up either, and the WAL only starts over once a checkpoint has caught up: measured,
50,000 messages in one burst left a 1.5 GB spool WAL.  So past RESTART_OVER bytes the
checkpoint is a RESTART one (the writer waits while the latest version of each page is
copied, a few MB at most, since the same pages are rewritten), and the writer's next
commit starts the WAL over and truncates it to JOURNAL_SIZE_LIMIT.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

RESTART_OVER = 32 << 20  # bytes of WAL
JOURNAL_SIZE_LIMIT = 16 << 20  # what a WAL that starts over is truncated to


def configure(db: sqlite3.Connection) -> None:
    """WAL, fsync at checkpoints only (a commit survives a crash of the process), and no
    automatic checkpoints on the writer's thread."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")  # wait out a RESTART checkpoint
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    db.execute("PRAGMA wal_autocheckpoint=0")


def checkpoint(path: Path) -> None:
    """Copy the WAL into the database file, with a connection of its own (safe from any
    thread).  Errors are the caller's to report."""
    try:
        size = path.with_name(path.name + "-wal").stat().st_size
    except FileNotFoundError:
        return
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        db.execute(f"PRAGMA wal_checkpoint({'RESTART' if size > RESTART_OVER else 'PASSIVE'})")
    finally:
        db.close()
