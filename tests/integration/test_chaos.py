"""Kill -9 of workers and of the daemon at random while 2,000 messages flow: every accepted
message is answered, exactly once.  What "lost", "duplicated" and "resent" mean is stated
in tests/chaos.py; scripts/bench/chaos.py runs the same driver at larger scale."""

from __future__ import annotations

import os

import pytest

from tests import chaos
from tests.harness import Daemon


def test_random_kills_lose_and_duplicate_no_reply(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("HERMESD_CHAOS_SEED") or int.from_bytes(os.urandom(4)))
    report = chaos.run(daemon, chaos.Plan(messages=2000, seed=seed))
    with capsys.disabled():
        print(f"\n{report.summary()}\n(rerun with HERMESD_CHAOS_SEED={seed})")
    assert report.ok, report.summary()
    assert report.kills["parent"] >= 2 and sum(report.kills.values()) >= 20, report.summary()
