"""Kill -9 of workers and of the daemon at random while 2,000 messages flow: every accepted
message is answered, exactly once.  scripts/bench/chaos.py runs the same driver
(tests/chaos.py) at larger scale."""

from __future__ import annotations

import os

import pytest

from tests import chaos
from tests.harness import Daemon


def test_random_kills_lose_and_duplicate_no_reply(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """Six clients send 2,000 messages to four echo agents while a worker is SIGKILLed every
    ~0.3 s and the daemon every ~3 s (then restarted on the same state dir).  A client whose
    connection drops reconnects, attaches its sessions again and resends what was not yet
    accepted, with the same client_id.

    Counted, once everything has settled:
    - lost: an accepted message (LocalAccepted seen) with no reply;
    - duplicated: a message answered twice in a way a client cannot drop: two reply seqs,
      two texts under one (msg_id, seq), or one client_id accepted under two msg_ids;
    - resent, allowed: a reply repeated with the same (msg_id, seq).  The daemon delivers
      each reply at least once: one written to the socket just before a kill, before its
      delivery was committed, is sent again after the restart, and the client drops it;
    - still open: messages the spool still owes a reply for (a fresh attach's pending ids).
    """
    seed = int(os.environ.get("HERMESD_CHAOS_SEED") or int.from_bytes(os.urandom(4)))
    report = chaos.run(daemon, chaos.Plan(messages=2000, seed=seed))
    with capsys.disabled():  # the figures belong in every run's output, not only with -s
        print(f"\n{report.summary()}\n(rerun with HERMESD_CHAOS_SEED={seed})")
    assert report.ok, report.summary()
    worker_kills = sum(n for kind, n in report.kills.items() if kind.startswith("worker"))
    assert report.kills["parent"] >= 3 and worker_kills >= 20, report.summary()
