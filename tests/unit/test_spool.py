"""The spool's promises: stored before routed, each reply once, acked when delivered."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from hermesd.spool import Incoming, Spool


def put(spool: Spool, external_id: str = "u1", key: str = "local:a") -> int:
    entry, _new = spool.put_inbound(
        Incoming(platform="local", external_id=external_id, session_key=key, text="hi"), "a")
    return entry.msg_id


def reply(spool: Spool, msg_id: int, seq: int = 0):  # type: ignore[no-untyped-def]
    return spool.put_reply(msg_id=msg_id, seq=seq, agent="a", text=f"r{seq}")


def test_repeated_update_is_recognised(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    message = Incoming(platform="local", external_id="u1", session_key="k", text="x")
    first, new = spool.put_inbound(message, "a")
    again, new_again = spool.put_inbound(message, "a")
    assert new and not new_again and again.msg_id == first.msg_id
    assert len(spool.pending()) == 1


def test_everything_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    msg_id = put(spool)
    reply(spool, msg_id)
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert [e.msg_id for e in reopened.pending()] == [msg_id]
    assert [r.text for r in reopened.undelivered()] == ["r0"]


def test_each_reply_is_stored_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    msg_id = put(spool)
    assert reply(spool, msg_id) is not None
    assert reply(spool, msg_id) is None  # a re-run of the same turn
    assert len(spool.undelivered()) == 1


def test_message_is_acked_only_when_done_and_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    msg_id = put(spool)
    stored = reply(spool, msg_id)
    assert not spool.finish(msg_id)  # a reply still waits
    assert spool.open_messages("local", "local:a") == [msg_id]
    assert spool.delivered(stored)
    assert spool.open_messages("local", "local:a") == []
    assert spool.pending() == []


def test_message_without_replies_is_acked_when_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    msg_id = put(spool)
    assert spool.finish(msg_id, error="boom")
    assert reply(spool, msg_id) is None  # too late: the message is finished


def test_ids_never_repeat_after_the_spool_is_recreated(tmp_path: Path) -> None:
    first = put(Spool(tmp_path / "one.db"))
    (tmp_path / "one.db").unlink()
    second = put(Spool(tmp_path / "one.db"))
    assert second > first


def test_prune_forgets_only_old_acked_messages(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    done = put(spool, "u1")
    spool.finish(done)
    open_id = put(spool, "u2")
    assert spool.prune(older_than=float("inf")) == 1
    assert [e.msg_id for e in spool.pending()] == [open_id]


def test_conversation_is_known_only_for_the_agent_it_was_routed_to(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    put(spool, key="local:chat")
    assert spool.has_conversation("local", "local:chat", "a")
    assert not spool.has_conversation("local", "local:chat", "b")
    assert not spool.has_conversation("telegram", "local:chat", "a")


def test_read_position_only_moves_forward_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.advance("discord", "101", 500)
    spool.advance("discord", "101", 400)  # an older message read late
    spool.advance("discord", "102", 7)
    spool.advance("telegram", "101", 900)
    spool.close()
    assert Spool(tmp_path / "spool.db").read_positions("discord") == {"101": 500, "102": 7}


def test_parts_sent_survive_reopening_and_end_with_delivery(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    stored = reply(spool, put(spool))
    assert spool.progress(stored) == 0
    spool.parts_sent(stored, 2)
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.progress(stored) == 2
    reopened.delivered(stored)
    assert reopened.progress(stored) is None  # delivered: nothing left to send


def test_spool_from_before_parts_were_counted_is_migrated(tmp_path: Path) -> None:
    """A spool.db written by a version without `parts_sent` keeps its replies, which start
    from their first part."""
    spool = Spool(tmp_path / "spool.db")
    stored = reply(spool, put(spool))
    spool.close()
    with sqlite3.connect(tmp_path / "spool.db") as db:  # the outbox as that version made it
        db.execute("ALTER TABLE outbox DROP COLUMN parts_sent")
    migrated = Spool(tmp_path / "spool.db")
    assert [r.text for r in migrated.undelivered()] == ["r0"] and migrated.progress(stored) == 0
    migrated.parts_sent(stored, 1)
    assert migrated.progress(stored) == 1


FIRST_SCHEMA = """
CREATE TABLE inbound (
    msg_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    session_key TEXT NOT NULL,
    sender      TEXT NOT NULL,
    agent       TEXT,
    text        TEXT NOT NULL,
    received_at REAL NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    UNIQUE (platform, external_id)
);
CREATE INDEX inbound_open ON inbound (state, msg_id) WHERE state < 2;
CREATE TABLE outbox (
    reply_id     INTEGER PRIMARY KEY,
    msg_id       INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    platform     TEXT NOT NULL,
    session_key  TEXT NOT NULL,
    agent        TEXT NOT NULL,
    text         TEXT NOT NULL,
    delivered_at REAL,
    UNIQUE (msg_id, seq)
);
CREATE INDEX outbox_open ON outbox (reply_id) WHERE delivered_at IS NULL;
INSERT INTO inbound (platform, external_id, session_key, sender, agent, text, received_at)
    VALUES ('local', 'old-1', 'local:a', '', 'a', 'asked before the upgrade', 0);
INSERT INTO outbox (msg_id, seq, platform, session_key, agent, text)
    VALUES (1, 0, 'local', 'local:a', 'a', 'answered before the upgrade');
"""
"""spool.db as the first versions of hermesd made it (before message depths, routed agents,
files with replies and parts sent)."""


def test_spool_of_the_first_versions_opens_and_keeps_its_messages(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.executescript(FIRST_SCHEMA)
    spool = Spool(tmp_path / "spool.db")
    assert [m.text for m in spool.pending()] == ["asked before the upgrade"]
    assert [(r.text, r.files) for r in spool.undelivered()] == [("answered before the upgrade", ())]
    assert put(spool, "new-1") > 1  # and it takes new ones


def test_spool_with_the_earlier_open_index_finds_its_pending_messages(tmp_path: Path) -> None:
    """A spool.db indexed as before (`inbound_open`, PENDING and DONE rows) is reindexed at
    open, and what was pending is still redelivered."""
    spool = Spool(tmp_path / "spool.db")
    msg_id = put(spool)
    spool.close()
    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.execute("DROP INDEX inbound_pending")
        db.execute("CREATE INDEX inbound_open ON inbound (state, msg_id) WHERE state < 2")
    reopened = Spool(tmp_path / "spool.db")
    assert [e.msg_id for e in reopened.pending()] == [msg_id]
    indexes = on_disk(tmp_path / "spool.db", "SELECT name FROM sqlite_master WHERE tbl_name = 'inbound'"
                      " AND type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    assert indexes == [("inbound_conversation",), ("inbound_pending",)]


def on_disk(path: Path, query: str) -> list[tuple]:
    """What another connection (another process, after a crash) reads: committed rows only."""
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def answer(spool: Spool, ids: list[int]) -> None:
    """What a worker's Reply and Done frames make the daemon write (grouped writes)."""
    for msg_id in ids:
        reply(spool, msg_id)
        spool.finish(msg_id)


def test_grouped_reply_is_on_disk_once_committed(tmp_path: Path) -> None:
    async def run() -> list[tuple]:
        spool = Spool(tmp_path / "spool.db")
        answer(spool, [put(spool)])
        spool.commit()  # what Deliveries calls before it sends anything
        return on_disk(tmp_path / "spool.db", "SELECT text FROM outbox")

    assert asyncio.run(run()) == [("r0",)]


def test_grouped_writes_reach_disk_after_one_loop_pass(tmp_path: Path) -> None:
    async def run() -> list[tuple]:
        spool = Spool(tmp_path / "spool.db")
        answer(spool, [put(spool)])
        await asyncio.sleep(0)
        return on_disk(tmp_path / "spool.db", "SELECT state FROM inbound")

    assert asyncio.run(run()) == [(1,)]


def test_closing_commits_grouped_writes(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path / "spool.db")
        reply(spool, put(spool))
        spool.close()

    asyncio.run(run())
    assert [r.text for r in Spool(tmp_path / "spool.db").undelivered()] == ["r0"]


def wal_growth(path: Path, burst: Callable[[Spool, list[int]], None]) -> int:
    """WAL bytes written by `burst` over 20 stored messages (checkpoints are the daemon's
    to run, so the WAL only grows here)."""
    spool = Spool(path)
    ids = [put(spool, f"u{i}", f"local:{i}") for i in range(20)]
    before = path.with_name(path.name + "-wal").stat().st_size
    burst(spool, ids)
    return path.with_name(path.name + "-wal").stat().st_size - before


def test_replies_and_dones_of_a_burst_share_commits(tmp_path: Path) -> None:
    async def grouped(spool: Spool, ids: list[int]) -> None:
        answer(spool, ids)  # as the frames of one read from the workers are handled
        await asyncio.sleep(0)

    one_by_one = wal_growth(tmp_path / "a.db", answer)  # no event loop: each write commits
    in_one_pass = wal_growth(tmp_path / "b.db", lambda spool, ids: asyncio.run(grouped(spool, ids)))
    assert in_one_pass * 5 < one_by_one
