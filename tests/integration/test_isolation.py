"""Landlock keeps each agent to its own files: a probing worker runtime
(tests/fakes/probe_runtime.py) tries, with plain system calls, what a hostile tool would."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Daemon
from workers import landlock

ABI = landlock.abi_version()
pytestmark = pytest.mark.skipif(ABI == 0, reason="this kernel has no Landlock (or it is disabled)")

SECRET = "b's private note"


@pytest.fixture
def probe(daemon: Daemon) -> Daemon:
    """Agent a probes; agent b holds a memory; a may read `docs` and write `drop`."""
    docs, drop = daemon.root / "docs", daemon.root / "drop"
    docs.mkdir()
    drop.mkdir()
    (docs / "guide.md").write_text("the team guide")
    daemon.write_config(f"""
        [agents.a]
        runtime = "python:tests.fakes.probe_runtime:make"
        shared_paths = [{{ path = "{docs}", mode = "ro" }}, {{ path = "{drop}", mode = "rw" }}]
        [agents.b]
        runtime = "echo"
        """)  # fmt: skip
    daemon.start()
    (_workspace(daemon, "b") / "memories" / "MEMORY.md").write_text(SECRET)
    daemon.send("local:b", "hi", "--agent", "b")  # b's state.db is made on first use
    assert (_workspace(daemon, "b") / "state.db").exists()
    return daemon


def _workspace(daemon: Daemon, agent: str) -> Path:
    return daemon.state_dir / "agents" / agent


def _ask_a(daemon: Daemon, text: str) -> str:
    return daemon.send("local:probe", text, "--agent", "a").removesuffix("\n")


def test_status_shows_each_worker_confined(probe: Daemon) -> None:
    assert {agent["sandbox"] for agent in probe.agents().values()} == {f"landlock v{ABI}"}
    assert f"landlock v{ABI}" in probe.ctl("status").stdout


def test_agent_reads_and_writes_its_own_workspace(probe: Daemon) -> None:
    assert _ask_a(probe, "write notes/today.md remember the milk") == "FileNotFoundError"
    assert _ask_a(probe, "write memories/MEMORY.md remember the milk") == "ok"
    assert _ask_a(probe, "read memories/MEMORY.md") == "remember the milk"
    assert (_workspace(probe, "a") / "memories" / "MEMORY.md").read_text() == "remember the milk"


@pytest.mark.parametrize("path", [
    "{b}/memories/MEMORY.md", "{b}/state.db", "../b/memories/MEMORY.md", "../b/state.db",
])  # fmt: skip
def test_agent_cannot_read_another_agents_files(probe: Daemon, path: str) -> None:
    assert _ask_a(probe, "read " + path.format(b=_workspace(probe, "b"))) == "PermissionError"


def test_agent_cannot_read_another_agents_memory_through_a_symlink(probe: Daemon) -> None:
    target = _workspace(probe, "b") / "memories" / "MEMORY.md"
    assert _ask_a(probe, f"symlink {target} peek.md") == "ok"
    assert _ask_a(probe, "read peek.md") == "PermissionError"


def test_agent_cannot_write_into_another_agents_workspace(probe: Daemon) -> None:
    assert _ask_a(probe, "write ../b/SOUL.md you are mine now") == "PermissionError"
    assert "you are mine" not in (_workspace(probe, "b") / "SOUL.md").read_text()


def test_read_only_shared_path_is_readable_but_not_writable(probe: Daemon) -> None:
    guide = probe.root / "docs" / "guide.md"
    assert _ask_a(probe, f"read {guide}") == "the team guide"
    assert _ask_a(probe, f"write {guide} defaced") == "PermissionError"
    assert guide.read_text() == "the team guide"


def test_read_write_shared_path_is_writable(probe: Daemon) -> None:
    report = probe.root / "drop" / "report.md"
    assert _ask_a(probe, f"write {report} done") == "ok"
    assert report.read_text() == "done"


def test_temporary_files_stay_in_the_workspace(probe: Daemon) -> None:
    assert _ask_a(probe, "write /tmp/shared.txt hello") == "PermissionError"
    assert Path(_ask_a(probe, "tempfile")).parent == _workspace(probe, "a") / ".tmp"
    assert _ask_a(probe, "spill") == "ok"


def test_daemon_environment_is_unreadable(probe: Daemon) -> None:
    assert _ask_a(probe, f"read /proc/{probe.pid}/environ") == "PermissionError"


def test_agent_cannot_signal_the_daemon(probe: Daemon) -> None:
    if ABI < 6:
        pytest.skip(f"Landlock ABI {ABI} has no signal scoping (needs 6)")
    assert _ask_a(probe, f"signal {probe.pid}") == "PermissionError"
