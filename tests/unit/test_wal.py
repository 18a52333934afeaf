"""WAL upkeep: a checkpointed WAL starts over and its file shrinks back, and a checkpoint
does not wait for an open write transaction.  (That a RESTART checkpoint is what resets a
WAL written without pause is measured in scripts/bench/backpressure.py; see
docs/BENCHMARKS.md.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hermesd import wal

BLOB = b"x" * (1 << 20)


def write(db: sqlite3.Connection, megabytes: int) -> None:
    for _ in range(megabytes):
        db.execute("INSERT OR REPLACE INTO t (id, data) VALUES (1, ?)", (BLOB,))


def table(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    wal.configure(db)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    return db


def wal_size(path: Path) -> int:
    return path.with_name(path.name + "-wal").stat().st_size


def test_a_big_wal_file_shrinks_back_after_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = table(path)
    write(db, 40)
    assert wal_size(path) > wal.RESTART_OVER
    wal.checkpoint(path)
    write(db, 1)  # the next commit starts the WAL over
    assert wal_size(path) <= wal.JOURNAL_SIZE_LIMIT


def test_a_small_wal_is_checkpointed_without_blocking_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = table(path)
    write(db, 2)
    db.execute("BEGIN")  # a transaction still open: PASSIVE copies what it can and returns
    db.execute("INSERT INTO t (id, data) VALUES (2, x'00')")
    wal.checkpoint(path)
    db.execute("COMMIT")
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (2,)
