"""Worker-side pieces on their own: path checks, schedules, memory caps, history trimming."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from hermesd.protocol import Deliver, SharedPathSpec
from workers import cron
from workers.llm import ChatMessage, FunctionCall, ToolCall
from workers.sessions import Sessions
from workers.statedb import StateDB
from workers.tools import memory
from workers.workspace import PathDenied, Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    shared_ro, shared_rw = tmp_path / "docs", tmp_path / "drop"
    shared_ro.mkdir()
    shared_rw.mkdir()
    space = Workspace(tmp_path / "agent", (SharedPathSpec(str(shared_ro), "ro"),
                                           SharedPathSpec(str(shared_rw), "rw")))
    space.ensure()
    return space


def test_fresh_workspace_has_the_hermes_profile_layout(workspace: Workspace) -> None:
    for name in ("SOUL.md", "memories/MEMORY.md", "memories/USER.md", "skills", "cron", "logs"):
        assert (workspace.root / name).exists(), name
    assert workspace.read("SOUL.md").strip()


def test_existing_soul_is_never_overwritten(workspace: Workspace) -> None:
    (workspace.root / "SOUL.md").write_text("mine")
    workspace.ensure()
    assert workspace.read("SOUL.md") == "mine"


def test_paths_inside_the_workspace_are_allowed(workspace: Workspace) -> None:
    assert workspace.resolve("skills/x/SKILL.md", write=True) == workspace.root / "skills/x/SKILL.md"


@pytest.mark.parametrize("name", ["../other/MEMORY.md", "/etc/passwd", "skills/../../x"])
def test_paths_leaving_the_workspace_are_refused(workspace: Workspace, name: str) -> None:
    with pytest.raises(PathDenied):
        workspace.resolve(name)


def test_symlink_out_of_the_workspace_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, workspace.root / "link")
    with pytest.raises(PathDenied, match="outside"):
        workspace.resolve("link")


def test_shared_paths_follow_their_mode(workspace: Workspace, tmp_path: Path) -> None:
    assert workspace.resolve(str(tmp_path / "docs/readme")) == tmp_path / "docs/readme"
    with pytest.raises(PathDenied, match="read-only"):
        workspace.resolve(str(tmp_path / "docs/readme"), write=True)
    assert workspace.resolve(str(tmp_path / "drop/out"), write=True) == tmp_path / "drop/out"


def test_schedules() -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
    assert cron.next_run("every 30m", now) == now + 1800
    assert cron.next_run("in 2h", now) == now + 7200
    assert cron.next_run("daily 09:00", now) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp()
    assert cron.next_run("daily 11:30", now) == datetime(2026, 11, 25, 11, 30, tzinfo=UTC).timestamp()
    assert cron.next_run("at 2026-12-01T09:00", now) == datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()
    assert cron.is_recurring("every 1h") and not cron.is_recurring("in 1h")


@pytest.mark.parametrize("bad", ["every 1s", "sometimes", "daily 25:00", "at tomorrow"])
def test_bad_schedules_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(cron.BadSchedule):
        cron.next_run(bad, 0.0)


class _Context:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace


def test_memory_is_capped_and_entries_are_separated(workspace: Workspace) -> None:
    context = _Context(workspace)

    def run(**args: str) -> str:
        return anyio.run(memory.run, args, context)  # type: ignore[arg-type]

    assert run(action="add", target="user", content="likes tea").startswith("ok")
    assert run(action="add", target="user", content="lives in Lyon").startswith("ok")
    assert workspace.read("memories/USER.md") == "likes tea\n§\nlives in Lyon\n"
    assert run(action="replace", target="user", old_text="tea", content="likes coffee").startswith("ok")
    assert "matches 0 notes" in run(action="remove", target="user", old_text="tea")
    assert "over its 1375 limit" in run(action="add", target="user", content="x" * 1400)
    assert "likes coffee" in workspace.read("memories/USER.md")


def test_history_is_trimmed_without_orphaned_tool_results(tmp_path: Path) -> None:
    sessions = Sessions(StateDB(tmp_path / "state.db"))
    session = sessions.current("local:x")
    call = ToolCall(id="c1", function=FunctionCall(name="memory", arguments="{}"))
    sessions.append(session, ChatMessage(role="user", content="a" * 500), 1)
    sessions.append(session, ChatMessage(role="assistant", tool_calls=[call]), 1)
    sessions.append(session, ChatMessage(role="tool", tool_call_id="c1", content="b" * 500), 1)
    sessions.append(session, ChatMessage(role="assistant", content="done"), 1)
    kept, omitted = sessions.history(session, budget_chars=520)  # cuts between call and result
    assert [m.role for m in kept] == ["assistant"] and omitted
    everything, none = sessions.history(session, budget_chars=10_000)
    assert [m.role for m in everything] == ["user", "assistant", "tool", "assistant"] and not none
    assert everything[1].tool_calls == [call]


def test_search_takes_fts_syntax_literally(tmp_path: Path) -> None:
    sessions = Sessions(StateDB(tmp_path / "state.db"))
    session = sessions.current("local:x")
    sessions.append(session, ChatMessage(role="user", content='he said "NEAR(" AND OR *'), 1)
    assert sessions.search('"NEAR(" AND') and sessions.search("*") == []
    assert sessions.search("said")[0].session_key == "local:x"


def test_deliver_depth_defaults_to_zero() -> None:
    assert Deliver(msg_id=1, platform="local", session_key="k", text="t").depth == 0


def test_parent_accepts_only_files_of_the_agent(tmp_path: Path) -> None:
    from hermesd import attachments
    from hermesd.protocol import WorkerSpec

    workspace = tmp_path / "agent"
    workspace.mkdir()
    (workspace / "ok.txt").write_text("fine")
    os.symlink("/etc/hostname", workspace / "sneaky.txt")
    spec = WorkerSpec(agent_id="a", runtime="echo", workspace=str(workspace))
    assert attachments.check(spec, "ok.txt") == str(workspace / "ok.txt")
    for name in ("sneaky.txt", "/etc/hostname", "../agent/../x", "missing.txt", "."):
        with pytest.raises(attachments.Refused):
            attachments.check(spec, name)
    with attachments.open_checked(str(workspace / "ok.txt"), attachments.roots(spec)) as file:
        assert file.read() == b"fine"
    (workspace / "ok.txt").unlink()
    os.symlink("/etc/hostname", workspace / "ok.txt")  # swapped after the check
    with pytest.raises(OSError):
        attachments.open_checked(str(workspace / "ok.txt"), attachments.roots(spec))
