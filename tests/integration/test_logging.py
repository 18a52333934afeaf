"""Logs as an operator sets them up: JSON lines in a file of their choosing, reopened on
SIGUSR1 after a rotation, and never a token."""

from __future__ import annotations

import json
import signal

from tests.harness import Daemon, wait_for


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_json_lines_in_log_file_reopened_after_rotation(daemon: Daemon) -> None:
    log_file = daemon.root / "hermesd.jsonl"
    daemon.write_config('[agents.a]\nruntime = "echo"\n',
                        daemon=f'log_format = "json"\nlog_file = "{log_file}"\n')
    daemon.start()
    first = records(log_file)
    assert any(r["event"] == "daemon_ready" and r["level"] == "info" and r["time"] for r in first)
    assert any(r["event"] == "agent_running" and r["agent"] == "a" for r in first)

    rotated = log_file.rename(daemon.root / "hermesd.jsonl.1")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGUSR1)
    wait_for(lambda: log_file.exists() and any(r["event"] == "log_reopened" for r in records(log_file)),
             what="a new log file")
    daemon.send("local:x", "hi", "--agent", "a")
    daemon.stop()
    assert any(r["event"] == "daemon_stopped" for r in records(log_file))
    assert not any(r["event"] == "daemon_stopped" for r in records(rotated))
    assert rotated.read_text().count("\n") == len(first)  # nothing more went to the old one


def test_hermesctl_logs_shows_and_follows_one_agents_lines(daemon: Daemon) -> None:
    daemon.write_config('[agents.a]\nruntime = "echo"\n[agents.b]\nruntime = "echo"\n')
    daemon.start()
    shown = daemon.ctl("logs", "a")
    assert shown.returncode == 0 and "event=agent_running agent=a" in shown.stdout
    assert "agent=b" not in shown.stdout
    assert daemon.ctl("logs", "a", "-n", "1").stdout.count("\n") == 1
    assert daemon.ctl("logs", "ghost").returncode == 1

    follower = daemon.ctl_popen("logs", "a", "-n", "0", "--follow")
    try:
        assert daemon.ctl("restart", "a").returncode == 0
        wait_for(lambda: daemon.agent_running("a"), what="a running again")
        line = follower.stdout.readline()  # the first new line: a's worker stopping
        assert "agent=a" in line and "event=" in line
    finally:
        follower.kill()
        follower.wait()
