"""memory_max with the daemon in a cgroup v2 of its own, as systemd's Delegate=yes gives it.

The test (as root) makes a fresh child of the cgroup2 mount and starts hermesd in it: a
shell writes its own pid into the cgroup, then execs hermesd.  What the daemon can do
there depends on the host: where the memory controller is bound to cgroup v1 (a hybrid
host) it says why and keeps the RSS watchdog; on a pure v2 host the kernel enforces the
limit.  Each test skips, saying so, on the host where it does not apply.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermesd import cgroups
from tests.harness import TWO_AGENTS, Daemon, wait_for

GREEDY = TWO_AGENTS + '[agents.greedy]\nruntime = "echo"\nmemory_max = "1M"\n'


@pytest.fixture
def own_cgroup() -> Iterator[Path]:
    """A new cgroup directly under the cgroup2 mount, dismantled afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    mounts = cgroups.cgroup2_mounts(Path("/proc/self/mountinfo").read_text())
    if not mounts:
        pytest.skip("no cgroup2 filesystem is mounted")
    top = Path(mounts[0][1])
    cgroup = top / f"hermesd-test-{uuid.uuid4().hex[:8]}"
    cgroup.mkdir()
    try:
        yield cgroup
    finally:
        _dismantle(cgroup, top)


def _dismantle(cgroup: Path, top: Path) -> None:
    """Children first: move any process left back to the top, then rmdir."""
    for child in sorted((p for p in cgroup.iterdir() if p.is_dir()), reverse=True):
        _dismantle(child, top)
    for pid in (cgroup / "cgroup.procs").read_text().split():
        try:
            (top / "cgroup.procs").write_text(pid)
        except ProcessLookupError:
            pass  # exited meanwhile
    cgroup.rmdir()


def memory_controller(cgroup: Path) -> bool:
    return "memory" in (cgroup / "cgroup.controllers").read_text().split()


def start_in(daemon: Daemon, cgroup: Path) -> None:
    daemon.write_config(GREEDY)
    daemon.command_prefix = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs")]
    daemon.start(wait=False)
    wait_for(lambda: (daemon.status() or {}).get("agents") and daemon.agents()["greedy"]["state"] == "fatal",
             timeout=30, what="greedy agent fatal")


def test_without_memory_controller_daemon_says_why_and_rss_watchdog_restarts_agent(
    own_cgroup: Path, daemon: Daemon
) -> None:
    if memory_controller(own_cgroup):
        pytest.skip("the memory controller is available in cgroup v2 here: the kernel enforces memory_max")
    start_in(daemon, own_cgroup)
    said = [line for line in daemon.log().splitlines() if "event=memory_limits" in line]
    assert len(said) == 1 and 'mechanism="rss watchdog"' in said[0]
    assert f"the memory controller is not available in {own_cgroup} (controllers: " in said[0]
    status = daemon.status()
    assert status is not None and status["daemon"]["memory_limits"] == "rss watchdog"
    assert "memory_max enforced by: rss watchdog" in daemon.ctl("status").stdout
    assert daemon.agents()["greedy"]["last_error"].startswith("memory_max exceeded: RSS")
    assert daemon.agents()["home"]["state"] == "running" and daemon.agents()["home"]["restarts"] == 0


def test_kernel_kills_worker_over_memory_max_and_status_says_so(own_cgroup: Path, daemon: Daemon) -> None:
    if not memory_controller(own_cgroup):
        controllers = (own_cgroup / "cgroup.controllers").read_text().strip() or "none"
        pytest.skip(f"the memory controller is not available in cgroup v2 here (controllers: "
                    f"{controllers}; a hybrid host binds it to v1)")
    start_in(daemon, own_cgroup)
    status = daemon.status()
    assert status is not None and status["daemon"]["memory_limits"] == f"cgroup {own_cgroup}"
    assert daemon.agents()["greedy"]["last_error"] == (
        "memory_max exceeded: killed by the kernel (cgroup memory.max 1 MiB)")
    assert str(daemon.pid) in (own_cgroup / "daemon" / "cgroup.procs").read_text().split()
    assert daemon.agents()["home"]["state"] == "running" and daemon.agents()["home"]["restarts"] == 0
