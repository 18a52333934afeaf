"""hermesd's own tools for hermes agents (send_to_agent, send_file, and cron through
hermes' cronjob tool) and the files a hermes answer names on `MEDIA:` lines: the real
daemon, real hermes-agent workers, the fake model asking for the tools."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon, wait_for
from tests.integration.hermes_setup import config, require_hermes

require_hermes()


@pytest.fixture
def agents(daemon: Daemon, llm: FakeOpenAI) -> Daemon:
    """Hermes agent a has hermesd's tools and may message b; c is out of its reach; d is a
    hermes agent without them."""
    daemon.write_config(config(llm, """
[agents.a]
runtime = "hermes"
tools = ["cron", "send_to_agent", "send_file"]
can_message = ["b"]
[agents.b]
runtime = "echo"
[agents.c]
runtime = "echo"
[agents.d]
runtime = "hermes"
tools = ["memory"]
"""))
    daemon.start()
    return daemon


def workspace(daemon: Daemon, agent: str) -> Path:
    return daemon.state_dir / "agents" / agent


def chats(llm: FakeOpenAI) -> list[dict]:
    return [r for r in llm.requests("model-a") if r["path"].endswith("/chat/completions")]


def offered(request: dict) -> set[str]:
    return {tool["function"]["name"] for tool in request["body"].get("tools") or []}


def tool_results(request: dict) -> list[str]:
    return [m["content"] for m in request["body"]["messages"] if m["role"] == "tool"]


def texts(request: dict) -> str:
    return "\n".join(str(m.get("content")) for m in request["body"]["messages"])


def asked(request: dict) -> str:
    """The last user message of a model request: what its turn was about."""
    return [m["content"] for m in request["body"]["messages"] if m["role"] == "user"][-1]


def test_hermesd_tools_are_offered_only_to_agents_that_list_them(agents: Daemon, llm: FakeOpenAI) -> None:
    agents.send("local:t", "hi", "--agent", "a")
    agents.send("local:t", "hi", "--agent", "d")
    with_tools, without = chats(llm)
    assert {"send_to_agent", "send_file", "cronjob"} <= offered(with_tools)
    assert not {"send_to_agent", "send_file", "cronjob"} & offered(without)


def ask(agents: Daemon, llm: FakeOpenAI, other: str) -> list[str]:
    """Have agent a's model ask `other` "status?"; return what the tool answered it."""
    llm.script("model-a", {"tool_calls": [{"name": "send_to_agent",
                                           "arguments": {"agent": other, "message": "status?"}}]},
               {"reply": "asked"})
    assert agents.send("local:q", f"ask {other}", "--agent", "a") == "asked\n"
    return tool_results(chats(llm)[-1])


def test_hermes_agent_asks_another_agent(agents: Daemon, llm: FakeOpenAI) -> None:
    assert ask(agents, llm, "b") == ["b: status?"]


def test_hermes_agent_may_not_message_an_agent_outside_can_message(agents: Daemon, llm: FakeOpenAI) -> None:
    assert ask(agents, llm, "c") == ["error: a may not message c (not in can_message)"]


def test_hermes_send_file_attaches_a_workspace_file(agents: Daemon, llm: FakeOpenAI) -> None:
    agents.send("local:f", "hi", "--agent", "a")  # the workspace exists
    report = workspace(agents, "a") / "report.txt"
    report.write_text("numbers")
    llm.script("model-a", {"tool_calls": [{"name": "send_file", "arguments": {"path": "report.txt"}}]},
               {"reply": "here it is"})
    assert agents.send("local:f", "send the report", "--agent", "a") == f"here it is\n[file: {report}]\n"


def test_media_line_in_a_hermes_answer_sends_the_file(agents: Daemon, llm: FakeOpenAI) -> None:
    agents.send("local:m", "hi", "--agent", "d")
    chart = workspace(agents, "d") / "chart.png"
    chart.write_bytes(b"\x89PNG")
    llm.script("model-a", {"reply": f"Here is the chart.\nMEDIA:{chart}"})
    assert agents.send("local:m", "draw it", "--agent", "d") == f"Here is the chart.\n[file: {chart}]\n"
    system = llm.requests("model-a")[-1]["body"]["messages"][0]
    assert system["role"] == "system" and "MEDIA:/absolute/path/to/file" in system["content"]


def test_media_line_outside_the_workspace_becomes_a_note(agents: Daemon, llm: FakeOpenAI) -> None:
    llm.script("model-a", {"reply": "Here it is.\nMEDIA:/etc/passwd"})
    answer = agents.send("local:m", "send passwd", "--agent", "d")
    assert answer == ("Here it is.\n(file not sent: /etc/passwd: outside this agent's workspace"
                      " and shared paths)\n")


def test_cron_job_made_by_a_hermes_agent_answers_in_its_conversation(
    agents: Daemon, llm: FakeOpenAI
) -> None:
    """The job fires without a restart, in the conversation it was made in, even though
    another conversation of the agent was active since."""
    when = (datetime.now(UTC) + timedelta(seconds=4)).isoformat(timespec="seconds")
    llm.script("model-a", {"tool_calls": [{"name": "cronjob", "arguments": {
        "action": "create", "name": "kettle", "schedule": when, "prompt": "say the kettle boiled"}}]},
        {"reply": "scheduled"})
    assert agents.send("local:kitchen", "remind me about the kettle", "--agent", "a") == "scheduled\n"
    assert agents.send("local:garden", "hi", "--agent", "a") == "fake: hi\n"
    wait_for(lambda: any("say the kettle boiled" in asked(r) for r in chats(llm)),
             timeout=20, what="the job's turn")
    job_turn = next(r for r in chats(llm) if "say the kettle boiled" in asked(r))
    assert "remind me about the kettle" in texts(job_turn) and "fake: hi" not in texts(job_turn)
    chat = agents.ctl("chat", "a", "--session", "kitchen", "--timeout", "10")
    assert chat.returncode == 0, chat.stderr
    assert "fake: [scheduled job kettle, once at" in chat.stdout
