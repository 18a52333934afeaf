"""The real daemon under etc/hermesd.service's system call filter, W^X memory, address
families, empty capability set and private /proc (tests/unit_sandbox.py applies them, as
far as they can be applied without systemd as PID 1): it must work as it does unconfined."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import sys

import pytest

from tests.fakes.notify_socket import NotifySocket
from tests.harness import REPO, TWO_AGENTS, Daemon
from workers import landlock

UNIT = REPO / "etc" / "hermesd.service"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("systemd-analyze") is None or not ctypes.util.find_library("seccomp"),
    reason="needs root (to set up the sandbox), systemd-analyze and libseccomp (Debian: systemd)")


def capabilities(pid: int) -> str:
    status = open(f"/proc/{pid}/status").read()
    return status.split("CapEff:")[1].split()[0]


def test_daemon_serves_confined_agents_under_the_units_sandbox(daemon: Daemon, notify: NotifySocket) -> None:
    daemon.command_prefix = [sys.executable, "-m", "tests.unit_sandbox", str(UNIT), "--"]
    daemon.write_config(TWO_AGENTS)
    daemon.start(wait=False, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"})
    assert notify.wait_for("READY", "1")["STATUS"] == "2 running", daemon.log()
    assert int(capabilities(daemon.pid), 16) == 0
    assert daemon.send("local:me", "hello", "--agent", "coder") == "coder: hello\n"
    expected = f"landlock v{landlock.abi_version()}" if landlock.abi_version() else "none"
    for agent in daemon.agents().values():
        assert agent["sandbox"] == expected  # the Landlock calls got through the filter
        assert agent["rss"] and agent["uss"]  # psutil reads the workers' smaps
    notify.wait_for("WATCHDOG", "1")
    assert daemon.ctl("reload", "--wait").returncode == 0
    notify.wait_for("RELOADING", "1")
    assert daemon.stop() == 0
    assert "level=error" not in daemon.log()
