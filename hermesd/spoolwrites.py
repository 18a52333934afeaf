"""How the spool writes: every write in a transaction, a failing disk turned into
SpoolUnavailable, and grouped writes.

Each commit writes every page it changed to the WAL, and the writes of one message change
the same few pages (the newest rows of each table and index) again and again: four
commits a message wrote about 14 pages of 4 KiB.  So the writes nothing outside the daemon
depends on until a reply or a "done" goes out (storing a reply, finishing a message) are
grouped: they join one open transaction, which is committed at the start of the event
loop's next pass, by `commit()` (whoever sends a reply or a "done" calls it first), or by
the next write that must be on disk at once (a message accepted, a reply delivered),
whichever comes first.  The replies and dones of all the frames read from the workers in
one pass share one commit.

A crash before that commit loses only what the spool gets back by itself: the message is
still pending, so it is redelivered, and its worker, which recorded the turn in its
ledger, sends the same replies again.  A commit that fails (a full disk) takes the grouped
writes with it in the same way: `reply_not_stored` is logged, and `Messages.resume`
redelivers the message once the spool takes writes again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hermesd import log


class SpoolUnavailable(Exception):
    """The spool cannot take writes (disk full, read-only, I/O error): nothing new may be
    accepted until it can, since accepting means storing first."""


class Writes:
    """The write side of the spool's connection (autocommit mode: transactions are ours)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self.fault: str | None = None  # why writes fail, until one succeeds again
        self.rollbacks = 0  # failed writes that took grouped writes with them
        self._grouped = False  # the open transaction holds grouped writes
        self._grouped_replies: list[int] = []  # msg_ids of the replies among them

    @contextmanager
    def transaction(self, grouped: bool = False) -> Iterator[None]:
        """Around every write: join the open transaction of grouped writes or begin one,
        then commit, unless this write is grouped too and an event loop runs to commit it
        at its next pass (without one, as in a script, every write commits at once).  A
        statement that fails is undone by SQLite alone; the transaction's other writes stay."""
        with self._failing():
            joined = self._db.in_transaction
            if not joined:
                self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                if not joined:  # nothing else is in it
                    self._db.rollback()
                raise
            if grouped:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    if not self._grouped:
                        self._grouped = True
                        loop.call_soon(self._commit_later)
                    return
            self._db.commit()
            self._ended()

    def grouped_reply(self, msg_id: int) -> None:
        """A reply to `msg_id` is among the grouped writes (named in the log if lost)."""
        self._grouped_replies.append(msg_id)

    def commit(self) -> None:
        """Commit the grouped writes now, if any are waiting.  Raises SpoolUnavailable if
        that fails; they are then lost, and redone as the module docstring says."""
        if self._db.in_transaction:
            with self._failing():
                self._db.commit()
            self._ended()

    def _commit_later(self) -> None:
        """The grouped writes' own commit, at the event loop's next pass."""
        try:
            self.commit()
        except SpoolUnavailable:
            pass  # `fault` is set: the daemon's health check reports it, `resume` redoes them

    def _ended(self) -> None:
        self._grouped = False
        self._grouped_replies.clear()

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """A full or read-only disk or an I/O error becomes SpoolUnavailable (and `fault`),
        never a crash of whoever was writing."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            self.fault = f"cannot write {self._path}: {exc}"
            if self._db.in_transaction:  # a failed COMMIT may leave it open
                self._db.rollback()
            if self._grouped:  # lost with it
                self.rollbacks += 1
                for msg_id in dict.fromkeys(self._grouped_replies):
                    log.error("reply_not_stored", msg_id=msg_id, error=self.fault,
                              consequence="the message is delivered again once the spool takes writes")
            self._ended()
            raise SpoolUnavailable(self.fault) from None
