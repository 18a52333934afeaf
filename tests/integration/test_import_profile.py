"""`hermesctl import-profile`: a Hermes profile directory becomes a running agent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hermesd import profiles
from tests.harness import Daemon

AGENTS = """
# the first agent: keep this comment
[agents.home]
runtime = "echo"   # trailing comment survives too
"""

STATE_DB = b"SQLite format 3\x00 not really, but the bytes must arrive as they are"


def make_profile(root: Path) -> Path:
    """A profile as `hermes profile create` lays it out, plus things that must stay behind."""
    profile = root / "profiles" / "work"
    (profile / "memories").mkdir(parents=True)
    (profile / "skills" / "x").mkdir(parents=True)
    (profile / "logs").mkdir()
    (profile / "SOUL.md").write_text("You are a careful assistant.\n")
    (profile / "memories" / "MEMORY.md").write_text("- the user likes tea\n")
    (profile / "skills" / "x" / "SKILL.md").write_text("---\nname: x\n---\nDo x.\n")
    (profile / ".env").write_text("OPENROUTER_API_KEY=sk-or-fake-secret\n")
    (profile / "logs" / "agent.log").write_text("log\n")
    (profile / "state.db").write_bytes(STATE_DB)
    secret = root / "outside-secret.txt"
    secret.write_text("not yours\n")
    (profile / "memories" / "outside.md").symlink_to(secret)
    return profile


def test_import_profile_starts_the_agent(daemon: Daemon, tmp_path: Path) -> None:
    profile = make_profile(tmp_path)
    daemon.write_config(AGENTS, extra="# last line comment\n", daemon="# daemon comment\n")
    daemon.start()
    original = daemon.config_path.read_text()
    daemon.config_path.chmod(0o640)

    result = daemon.ctl("import-profile", str(profile), "--as", "imported", "--runtime", "echo",
                        "--reload")
    assert result.returncode == 0, result.stderr
    assert "added: imported" in result.stdout
    assert ".env (secrets)" in result.stdout and "outside.md" in result.stdout

    workspace = daemon.state_dir / "agents" / "imported"
    assert (workspace / "SOUL.md").read_text() == "You are a careful assistant.\n"
    assert (workspace / "memories" / "MEMORY.md").read_text() == "- the user likes tea\n"
    assert (workspace / "skills" / "x" / "SKILL.md").exists()
    assert (workspace / "hermes-state.db").read_bytes() == STATE_DB
    assert not (workspace / ".env").exists() and not (workspace / "logs" / "agent.log").exists()
    assert not os.path.lexists(workspace / "memories" / "outside.md")
    assert b"sk-or-fake-secret" not in b"".join(
        p.read_bytes() for p in workspace.rglob("*") if p.is_file())

    edited = daemon.config_path.read_text()
    assert edited.startswith(original)  # every byte of the operator's file, comments included
    for comment in ("# daemon comment", "# the first agent: keep this comment",
                    "# trailing comment survives too", "# last line comment"):
        assert comment in edited
    assert f"# imported from {profile.resolve()} on " in edited
    assert '[agents.imported]\nruntime = "echo"\n' in edited
    assert daemon.config_path.stat().st_mode & 0o777 == 0o640

    assert daemon.agents()["imported"]["state"] == "running"
    assert daemon.send("local:x", "hi", "--agent", "imported") == "imported: hi\n"

    # A second import under the same id is refused and touches nothing.
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    again = daemon.ctl("import-profile", str(profile), "--as", "imported", "--runtime", "echo")
    assert again.returncode == 1
    assert "already exists" in again.stderr and again.stderr.count("\n") == 1
    assert daemon.config_path.read_text() == edited
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*")) == before


def test_invalid_id_fails_before_asking_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    profile = make_profile(tmp_path)
    result = daemon.ctl("import-profile", str(profile), "--as", "Not Valid")  # no daemon running
    assert result.returncode == 1
    assert "invalid agent id" in result.stderr
    assert not daemon.state_dir.exists()


def test_invalid_result_changes_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """An edit the loader rejects (no such provider) is reported and nothing is written;
    with --config and without --reload the daemon is not needed."""
    profile = make_profile(tmp_path)
    daemon.write_config(AGENTS)
    original = daemon.config_path.read_text()
    result = daemon.ctl("import-profile", str(profile), "--as", "imported",
                        "--config", str(daemon.config_path), "--llm", "nope")
    assert result.returncode == 1
    assert "no provider [llm.nope]" in result.stderr
    assert daemon.config_path.read_text() == original
    assert not (daemon.state_dir / "agents" / "imported").exists()


def test_json_and_workspace_refusal(daemon: Daemon, tmp_path: Path) -> None:
    profile = make_profile(tmp_path)
    daemon.write_config(AGENTS)
    taken = daemon.state_dir / "agents" / "taken"
    taken.mkdir(parents=True)
    (taken / "MEMORY.md").write_text("someone else's\n")
    refused = daemon.ctl("import-profile", str(profile), "--as", "taken", "--runtime", "echo",
                         "--config", str(daemon.config_path))
    assert refused.returncode == 1 and "not empty" in refused.stderr
    assert "[agents.taken]" not in daemon.config_path.read_text()

    result = daemon.ctl("--json", "import-profile", str(profile), "--as", "fresh",
                        "--runtime", "echo", "--config", str(daemon.config_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workspace"] == str(daemon.state_dir / "agents" / "fresh")
    assert "state.db as hermes-state.db" in data["copied"]


def test_embedded_default_has_no_file_to_edit() -> None:
    with pytest.raises(profiles.ProfileError, match="built-in configuration"):
        profiles.config_file(None, {"config": "<embedded default>", "pid": os.getpid()})
