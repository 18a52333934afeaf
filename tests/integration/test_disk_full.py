"""A state directory that fills up: hermesd says so in status and logs,
refuses new messages with a clear error (nothing half-accepted), and picks up again by
itself once the disk can take writes; messages it had accepted are still answered.

The state directory is a small tmpfs mounted for the test, so this needs root."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.harness import Daemon, wait_for

AGENTS = """
[agents.echo]
runtime = "echo"
[agents.slow]
runtime = "echo"
echo_delay = 1.5
"""
MIN_FREE = 4 << 20


@contextmanager
def state_dir_on(daemon: Daemon, *commands: list[str]) -> Iterator[None]:
    """Run `commands`, the last of which mounts a file system on the state directory
    (skipped, with the reason, where that cannot be done); unmount it at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system as the state directory needs root")
    daemon.state_dir.mkdir()
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot run {command[0]} here: {done.stderr.strip()}")
    try:
        yield
    finally:
        daemon.stop()
        subprocess.run(["umount", "-l", str(daemon.state_dir)], check=False)


def start(daemon: Daemon) -> Daemon:
    daemon.write_config(AGENTS, daemon=f'min_free_space = {MIN_FREE}\ndefault_agent = "echo"\n')
    daemon.start()
    return daemon


@pytest.fixture
def small_disk(daemon: Daemon) -> Iterator[Daemon]:
    with state_dir_on(daemon, ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(daemon.state_dir)]):
        yield start(daemon)


def spool_state(daemon: Daemon) -> str:
    status = daemon.status()
    assert status is not None
    return status["daemon"]["spool"]


def fill(daemon: Daemon, leave: int) -> None:
    """Leave only `leave` bytes free on the state directory's file system."""
    fs = os.statvfs(daemon.state_dir)
    size = fs.f_bavail * fs.f_frsize - leave
    with open(daemon.state_dir / "filler", "wb") as filler:
        filler.truncate(0)
        filler.write(b"\0" * size)


def shrink_wal(daemon: Daemon) -> None:
    """Truncate the spool's WAL file, as a checkpoint may: its next write must then find
    new blocks on the disk rather than reuse old ones, so a full disk makes it fail."""
    db = sqlite3.connect(daemon.state_dir / "spool.db", timeout=5)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def test_nearly_full_disk_refuses_new_messages_then_recovers(small_disk: Daemon) -> None:
    daemon = small_disk
    assert daemon.send("local:d", "before") == "echo: before\n"
    fill(daemon, MIN_FREE // 2)
    wait_for(lambda: spool_state(daemon).startswith("disk nearly full"), what="fault in status")

    refused = daemon.ctl("send", "local:d", "during")
    assert refused.returncode == 1
    assert "not accepted, send it again later: disk nearly full" in refused.stderr
    assert "NOT ACCEPTING new messages: disk nearly full" in daemon.ctl("status").stdout
    assert "spool_unwritable" in daemon.log()

    (daemon.state_dir / "filler").unlink()
    wait_for(lambda: spool_state(daemon) == "ok", what="recovery")
    assert daemon.send("local:d", "after") == "echo: after\n"
    assert "spool_writable" in daemon.log()


def test_message_accepted_before_the_fault_is_answered_after_it(small_disk: Daemon) -> None:
    """Its reply cannot be stored while the disk is full (nor can the worker record that it
    ran it); once writes work again it is delivered again and answered once."""
    daemon = small_disk
    sender = daemon.ctl_popen("send", "local:mid", "in flight", "--agent", "slow")
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 1, what="turn running")
    shrink_wal(daemon)
    fill(daemon, 0)
    wait_for(lambda: "reply_not_stored" in daemon.log(), timeout=15, what="the reply bounced")
    (daemon.state_dir / "filler").unlink()
    out, err = sender.communicate(timeout=30)
    assert (sender.returncode, out) == (0, "slow: in flight\n"), err
    assert spool_state(daemon) == "ok"


def test_read_only_state_dir_at_start_is_a_clear_error(daemon: Daemon) -> None:
    with state_dir_on(daemon, ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(daemon.state_dir)]):
        daemon.write_config(AGENTS)
        daemon.start(wait=False)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=30) == 1
        assert f"cannot open the spool in {daemon.state_dir}" in daemon.log()


@pytest.fixture
def failing_disk(daemon: Daemon) -> Iterator[Daemon]:
    """The state directory on a small ext4 image mounted errors=remount-ro: the file system
    turns read-only under the running daemon, as a real one does after an I/O error."""
    image = daemon.root / "state.img"
    with open(image, "wb") as file:
        file.truncate(64 << 20)
    with state_dir_on(daemon, ["mkfs.ext4", "-q", str(image)],
                      ["mount", "-o", "loop,errors=remount-ro", str(image), str(daemon.state_dir)]):
        yield start(daemon)


def test_state_dir_turning_read_only_is_reported_and_refuses_new_messages(failing_disk: Daemon) -> None:
    """(ext4 with an aborted journal stays read-only until it is checked and mounted again,
    which means a restart of hermesd: recovery is what the tests above show.)"""
    daemon = failing_disk
    assert daemon.send("local:r", "before") == "echo: before\n"
    device = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(daemon.state_dir)],
                                             capture_output=True, text=True, check=True).stdout.strip())
    with open(f"/sys/fs/ext4/{device}/trigger_fs_error", "w") as trigger:
        trigger.write("test\n")  # ext4 now fails every write with EROFS

    refused = daemon.ctl("send", "local:r", "during")
    assert refused.returncode == 1 and "not accepted, send it again later" in refused.stderr
    assert spool_state(daemon).startswith("cannot write")
    wait_for(lambda: "spool_unwritable" in daemon.log(), what="the fault logged")
    assert "NOT ACCEPTING new messages: cannot write" in daemon.ctl("status").stdout
    assert all(agent["state"] == "running" for agent in daemon.agents().values())
