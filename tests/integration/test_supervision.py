"""Workers die, hang, crash-loop and misbehave; the daemon contains it."""

from __future__ import annotations

import os
import signal

import psutil

from tests.harness import TWO_AGENTS as AGENTS
from tests.harness import Daemon, exists, live, wait_for


def test_killed_worker_answers_again_and_others_are_untouched(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    before = daemon.agents()
    os.kill(before["coder"]["pid"], signal.SIGKILL)
    wait_for(lambda: daemon.agent_running("coder", other_than=before["coder"]["pid"]),
             what="coder replaced")
    after = daemon.agents()
    assert after["coder"]["restarts"] == 1
    assert "SIGKILL" in after["coder"]["last_error"]
    assert after["home"]["pid"] == before["home"]["pid"] and after["home"]["restarts"] == 0
    assert daemon.send("local:me", "back?", "--agent", "coder") == "coder: back?\n"
    assert not exists(before["coder"]["pid"])  # reaped: not even a zombie
    assert not any(p.status() == psutil.STATUS_ZOMBIE for p in daemon.children())


def test_crash_loop_reaches_fatal_and_is_shown(daemon: Daemon) -> None:
    blocker = daemon.root / "not-a-dir"
    blocker.write_text("a file where the workspace should be")
    daemon.write_config(AGENTS + f'[agents.broken]\nruntime = "echo"\nworkspace = "{blocker}"\n')
    daemon.start(wait=False)
    wait_for(lambda: (daemon.status() or {}).get("agents") and daemon.agents()["broken"]["state"] == "fatal",
             what="broken agent fatal")
    broken = daemon.agents()["broken"]
    assert broken["pid"] is None
    assert "worker_setup_failed" in broken["last_error"] and "Not a directory" in broken["last_error"]
    assert broken["restarts"] == 3  # fatal_failures = 4: the 4th failure gives up
    assert daemon.agents()["home"]["state"] == "running"
    assert "agent_fatal" in daemon.log()
    # a fixed workspace and an explicit start bring it back
    blocker.unlink()
    assert daemon.ctl("start", "broken").returncode == 0
    wait_for(lambda: daemon.agent_running("broken"), what="broken agent running after start")


def test_hung_worker_is_killed_by_heartbeat_and_replaced(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    hung = daemon.agents()["coder"]["pid"]
    os.kill(hung, signal.SIGSTOP)
    wait_for(lambda: daemon.agent_running("coder", other_than=hung), what="hung worker replaced")
    assert daemon.agents()["coder"]["last_error"].startswith("no heartbeat")
    assert not exists(hung)


def test_stop_and_start_one_agent(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    pid = daemon.agents()["coder"]["pid"]
    assert daemon.ctl("stop", "coder").returncode == 0
    assert daemon.agents()["coder"]["state"] == "stopped"
    wait_for(lambda: not live(pid), what="stopped worker gone")
    assert daemon.ctl("start", "coder").returncode == 0
    wait_for(lambda: daemon.agent_running("coder"), what="coder running again")
    assert daemon.ctl("restart", "coder").returncode == 0
    assert daemon.agents()["coder"]["restarts"] == 0  # asked for, not failures


def test_message_to_a_just_killed_worker_does_not_hurt_the_daemon(daemon: Daemon) -> None:
    """Writing to a dead worker's socket before it is reaped is an ordinary event."""
    daemon.write_config(AGENTS)
    daemon.start()
    for round_ in range(3):  # fatal_failures = 4
        pid = daemon.agents()["coder"]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert daemon.send("local:race", f"round {round_}", "--agent", "coder") == f"coder: round {round_}\n"
        wait_for(lambda pid=pid: daemon.agent_running("coder", other_than=pid), what="coder back")
    assert daemon.process is not None and daemon.process.poll() is None


def test_worker_over_memory_max_is_restarted_and_reported(daemon: Daemon) -> None:
    daemon.write_config(AGENTS + '[agents.greedy]\nruntime = "echo"\nmemory_max = "1M"\n')
    daemon.start(wait=False)
    wait_for(lambda: (daemon.status() or {}).get("agents") and daemon.agents()["greedy"]["state"] == "fatal",
             timeout=30, what="greedy agent fatal")
    assert daemon.agents()["greedy"]["last_error"].startswith("memory_max exceeded: RSS")
    assert daemon.agents()["home"]["state"] == "running" and daemon.agents()["home"]["restarts"] == 0
