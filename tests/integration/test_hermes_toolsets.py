"""hermes-agent's other toolsets, enabled by `tools = [...]` for runtime = "hermes":
delegation (sub-agents on the agent's own provider), code execution (a Python child
inside the worker's sandbox), web search (through a fake SearXNG on 127.0.0.1) and the
browser (which needs agent-browser and Chromium)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.searxng_server import FakeSearXNG
from tests.harness import Daemon, wait_for
from tests.integration.hermes_setup import config, require_hermes
from workers import landlock

require_hermes()

AGENTS = """
[agents.a]
runtime = "hermes"
tools = ["files", "delegation", "code_execution", "web", "browser", "hermes:project", "hermes:nosuch"]
[agents.b]
runtime = "echo"
"""
SECRET = "b's private note"


def workspace(daemon: Daemon, agent: str) -> Path:
    return daemon.state_dir / "agents" / agent


def start(daemon: Daemon, llm: FakeOpenAI, dotenv: str = "") -> Daemon:
    """Agent a has every toolset here, its workspace's .env holding `dotenv`; agent b's
    workspace holds a secret."""
    for agent in ("a", "b"):
        workspace(daemon, agent).mkdir(parents=True)
    workspace(daemon, "a").joinpath(".env").write_text(dotenv)
    workspace(daemon, "b").joinpath("secret.txt").write_text(SECRET)
    daemon.write_config(config(llm, AGENTS))
    daemon.start()
    return daemon


@pytest.fixture
def agents(daemon: Daemon, llm: FakeOpenAI) -> Daemon:
    return start(daemon, llm)


@pytest.fixture
def searxng() -> Iterator[FakeSearXNG]:
    with FakeSearXNG() as fake:
        yield fake


def chat_requests(llm: FakeOpenAI) -> list[dict]:
    return [r["body"] for r in llm.requests("model-a") if r["path"].endswith("/chat/completions")]


def offered(llm: FakeOpenAI) -> set[str]:
    """The tools the model was offered in its last request."""
    return {tool["function"]["name"] for tool in chat_requests(llm)[-1].get("tools") or []}


def tool_result(daemon: Daemon, llm: FakeOpenAI, name: str, arguments: dict, *between: dict) -> str:
    """Have agent a's model call one tool (`between`: the steps of the model calls the tool
    makes itself); return what the tool answered the model."""
    llm.script("model-a", {"tool_calls": [{"name": name, "arguments": arguments}]}, *between,
               {"reply": "done"})
    assert daemon.send("local:a", "go", "--agent", "a").startswith("done")
    return next(m["content"] for m in reversed(chat_requests(llm)[-1]["messages"]) if m["role"] == "tool")


def run_python(daemon: Daemon, llm: FakeOpenAI, code: str) -> dict:
    return json.loads(tool_result(daemon, llm, "execute_code", {"code": code}))


def needs_landlock() -> None:
    if landlock.abi_version() == 0:
        pytest.skip("this kernel has no Landlock (or it is disabled)")


def test_delegate_task_answers_with_the_sub_agents_result(agents: Daemon, llm: FakeOpenAI) -> None:
    answer = json.loads(tool_result(agents, llm, "delegate_task", {"goal": "find the answer"},
                                    {"reply": "the answer is 42"}))
    assert [(r["status"], r["summary"]) for r in answer["results"]] == [("completed", "the answer is 42")]
    # the sub-agent had a conversation of its own: the goal as its first message
    child = chat_requests(llm)[1]["messages"]
    assert [m["content"] for m in child if m["role"] == "user"] == ["find the answer"]


def test_execute_code_writes_in_the_workspace(agents: Daemon, llm: FakeOpenAI) -> None:
    result = run_python(agents, llm, "open('made.txt', 'w').write('made by code'); print('ok')")
    assert (result["status"], result["output"].strip()) == ("success", "ok")
    assert workspace(agents, "a").joinpath("made.txt").read_text() == "made by code"


def test_execute_code_calls_hermes_tools_over_its_socket(agents: Daemon, llm: FakeOpenAI) -> None:
    workspace(agents, "a").joinpath("notes.txt").write_text("a's own notes")
    result = run_python(agents, llm, "from hermes_tools import read_file\n"
                                     "print(read_file('notes.txt')['content'])")
    assert "a's own notes" in result["output"] and result["tool_calls_made"] == 1


def test_execute_code_cannot_read_another_agents_workspace(agents: Daemon, llm: FakeOpenAI) -> None:
    needs_landlock()
    secret = workspace(agents, "b") / "secret.txt"
    result = run_python(agents, llm, f"print(open({str(secret)!r}).read())")
    assert "PermissionError" in result["output"] + result.get("error", "")
    assert SECRET not in result["output"]


def test_execute_code_cannot_write_outside_the_workspace(agents: Daemon, llm: FakeOpenAI) -> None:
    needs_landlock()
    outside = agents.root / "escaped.txt"
    result = run_python(agents, llm, f"open({str(outside)!r}, 'w').write('out')")
    assert "PermissionError" in result["output"] + result.get("error", "")
    assert not outside.exists()


def test_web_search_answers_from_the_workspaces_searxng(daemon: Daemon, llm: FakeOpenAI,
                                                       searxng: FakeSearXNG) -> None:
    start(daemon, llm, f"SEARXNG_URL={searxng.url}\n")
    answer = tool_result(daemon, llm, "web_search", {"query": "hermesd"})
    # hermes wraps what came from the web in a warning to the model: the JSON is inside
    answer = json.loads(answer[answer.index("{"):answer.rindex("}") + 1])
    assert answer["data"]["web"][0]["title"] == "Result for hermesd"
    assert searxng.queries() == ["hermesd"]


def test_web_tools_are_not_offered_without_a_backend(agents: Daemon, llm: FakeOpenAI) -> None:
    answer = tool_result(agents, llm, "web_search", {"query": "hermesd"})
    assert "web_search" not in offered(llm) and "execute_code" in offered(llm)
    assert "'web_search' does not exist" in answer


def test_browser_tools_are_not_offered_without_a_browser(agents: Daemon, llm: FakeOpenAI) -> None:
    if shutil.which("agent-browser") or shutil.which("chromium"):
        pytest.skip("a browser is installed here: the browser toolset is offered")
    answer = tool_result(agents, llm, "browser_navigate", {"url": "https://example.org"})
    assert not {name for name in offered(llm) if name.startswith("browser_")}
    assert "'browser_navigate' does not exist" in answer
    wait_for(lambda: "event=hermes_tool_unavailable" in agents.log() and "tool=browser" in agents.log(),
             what="the operator told why")


def test_any_other_hermes_toolset_is_offered_by_its_hermes_name(agents: Daemon, llm: FakeOpenAI) -> None:
    assert agents.send("local:a", "hello", "--agent", "a") == "fake: hello\n"
    assert {"project_create", "project_list"} <= offered(llm)
    wait_for(lambda: "tool=hermes:nosuch" in agents.log(), what="the unknown toolset logged")
    assert "tool=hermes:project" not in agents.log()
