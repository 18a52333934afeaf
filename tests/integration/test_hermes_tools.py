"""hermes-agent's file and terminal tools, enabled by `tools = [..., "files", "terminal"]`,
run inside the worker, so its Landlock sandbox keeps them to the agent's workspace: the
fake model asks for the commands and reads what the tools answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon
from tests.integration.hermes_setup import config, require_hermes
from workers import landlock

require_hermes()
if landlock.abi_version() == 0:
    pytest.skip("this kernel has no Landlock (or it is disabled)", allow_module_level=True)

SECRET = "b's private note"


@pytest.fixture
def agents(daemon: Daemon, llm: FakeOpenAI) -> Daemon:
    """Agent a has the terminal and file tools; agent b holds a memory."""
    daemon.write_config(config(llm, """
[agents.a]
runtime = "hermes"
tools = ["memory", "files", "terminal"]
[agents.b]
runtime = "echo"
"""))
    daemon.start()
    workspace(daemon, "b").joinpath("memories/MEMORY.md").write_text(SECRET)
    workspace(daemon, "a").joinpath("notes.txt").write_text("a's own notes")
    return daemon


def workspace(daemon: Daemon, agent: str) -> Path:
    return daemon.state_dir / "agents" / agent


def tool_result(daemon: Daemon, llm: FakeOpenAI, name: str, arguments: dict) -> str:
    """Have agent a's model call one tool; return what the tool answered the model."""
    llm.script("model-a", {"tool_calls": [{"name": name, "arguments": arguments}]},
               {"reply": "done"})
    # hermes may append a note (a file it failed to write) to the model's reply
    assert daemon.send("local:a", "go", "--agent", "a").startswith("done\n")
    last = [r for r in llm.requests("model-a") if r["path"].endswith("/chat/completions")][-1]
    return next(m["content"] for m in reversed(last["body"]["messages"]) if m["role"] == "tool")


def terminal(daemon: Daemon, llm: FakeOpenAI, command: str) -> dict:
    return json.loads(tool_result(daemon, llm, "terminal", {"command": command}))


def test_terminal_reads_the_agents_own_files(agents: Daemon, llm: FakeOpenAI) -> None:
    result = terminal(agents, llm, "cat notes.txt")
    assert "a's own notes" in result["output"]


def test_terminal_cannot_read_another_agents_memories(agents: Daemon, llm: FakeOpenAI) -> None:
    result = terminal(agents, llm, f"cat {workspace(agents, 'b')}/memories/MEMORY.md")
    assert "Permission denied" in result["output"] and SECRET not in result["output"]


def test_terminal_cannot_write_outside_the_workspace(agents: Daemon, llm: FakeOpenAI) -> None:
    outside = agents.root / "escaped.txt"
    result = terminal(agents, llm, f"echo out > {outside}")
    assert "Permission denied" in result["output"]
    assert not outside.exists()


def test_file_tool_cannot_read_another_agents_memories(agents: Daemon, llm: FakeOpenAI) -> None:
    answer = tool_result(agents, llm, "read_file",
                         {"path": f"{workspace(agents, 'b')}/memories/MEMORY.md"})
    assert SECRET not in answer
    assert json.loads(answer)["error"]  # hermes words the denial as "File not found"


def test_file_tool_cannot_write_outside_the_workspace(agents: Daemon, llm: FakeOpenAI) -> None:
    outside = agents.root / "escaped.txt"
    answer = tool_result(agents, llm, "write_file", {"path": str(outside), "content": "out"})
    assert "Permission denied" in json.loads(answer)["error"]
    assert not outside.exists()
