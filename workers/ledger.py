"""The worker's memory of which messages it has already answered, in its state.db.

The parent redelivers every message it has no `Done` for (after a worker or daemon crash).
A message recorded here is not run again: its stored replies are sent again instead, and
the parent keeps only the first copy of each (msg_id, seq).
"""

from __future__ import annotations

import sqlite3
import time

import msgspec

from workers.runtimes.home import Say
from workers.statedb import StateDB

_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder(list[tuple[str, tuple[str, ...]]])
KEEP_SECONDS = 30 * 86400


class Ledger:
    def __init__(self, state: StateDB) -> None:
        self._state = state
        self._pruned = False

    def replies_of(self, msg_id: int) -> list[Say] | None:
        """The replies already given to `msg_id`, or None if it was never finished."""
        db = self._state.db
        if not self._pruned:
            try:
                db.execute("DELETE FROM handled WHERE handled_at < ?", (time.time() - KEEP_SECONDS,))
                self._pruned = True
            except sqlite3.OperationalError:
                pass  # a full disk: prune at a later turn
        row = db.execute("SELECT replies FROM handled WHERE msg_id = ?", (msg_id,)).fetchone()
        return None if row is None else [Say(*reply) for reply in _DECODE.decode(row[0])]

    def record(self, msg_id: int, replies: list[Say]) -> None:
        self._state.db.execute(
            "INSERT OR REPLACE INTO handled (msg_id, replies, handled_at) VALUES (?, ?, ?)",
            (msg_id, _ENCODE.encode(replies), time.time()),
        )
