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
