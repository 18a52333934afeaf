"""Real agents: the openai runtime in real workers, talking to a fake OpenAI-compatible
server on 127.0.0.1, driven through hermesctl."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon, wait_for


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def agents_config(llm: FakeOpenAI, extra: str = "") -> str:
    return f"""
[llm.default]
base_url = "{llm.url}"
model = "model-a"
timeout = 2
max_retries = 1

[agents.alice]
runtime = "openai"
can_message = ["bob"]
[agents.bob]
runtime = "openai"
llm = {{ base_url = "{llm.url}", model = "model-b", timeout = 2, max_retries = 1 }}
{extra}
[[routes]]
match = "telegram:topic:-100:1"
agent = "alice"
[[routes]]
match = "telegram:topic:-100:2"
agent = "bob"
"""


def system_of(request: dict) -> str:
    return request["body"]["messages"][0]["content"]


def user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["body"]["messages"] if m["role"] == "user"]


def start(daemon: Daemon, llm: FakeOpenAI, extra: str = "") -> None:
    daemon.write_config(agents_config(llm, extra))
    daemon.start()


def test_each_agent_answers_with_its_own_soul(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    (daemon.state_dir / "agents/alice/SOUL.md").write_text("You are Alice the pirate.")
    (daemon.state_dir / "agents/bob/SOUL.md").write_text("You are Bob the gardener.")
    assert daemon.send("telegram:topic:-100:1:7", "hello") == "fake: hello\n"
    assert daemon.send("telegram:topic:-100:2:7", "hi") == "fake: hi\n"
    alice, bob = llm.requests("model-a")[-1], llm.requests("model-b")[-1]
    assert "Alice the pirate" in system_of(alice) and "Bob" not in system_of(alice)
    assert "Bob the gardener" in system_of(bob) and "Alice" not in system_of(bob)
    assert user_texts(alice) == ["hello"]


def test_memory_written_in_one_turn_is_in_the_next_prompt_and_survives_restart(
    daemon: Daemon, llm: FakeOpenAI
) -> None:
    start(daemon, llm)
    llm.script("model-a",
               {"tool_calls": [{"name": "memory", "arguments": {
                   "action": "add", "target": "user", "content": "Prefers tea over coffee"}}]},
               {"reply": "Noted."})
    assert daemon.send("local:a", "remember: I like tea", "--agent", "alice") == "Noted.\n"
    tool_result = llm.requests("model-a")[-1]["body"]["messages"][-1]
    assert tool_result["role"] == "tool" and tool_result["content"].startswith("ok:")
    daemon.send("local:a", "what do I drink?", "--agent", "alice")
    assert "Prefers tea over coffee" in system_of(llm.requests("model-a")[-1])
    assert "tea" not in (daemon.state_dir / "agents/bob/memories/USER.md").read_text()

    assert daemon.ctl("restart", "alice").returncode == 0
    wait_for(lambda: daemon.agent_running("alice"), what="alice back")
    daemon.send("local:a", "and now?", "--agent", "alice")
    assert "Prefers tea over coffee" in system_of(llm.requests("model-a")[-1])


def test_history_is_kept_per_session_and_new_starts_afresh(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    daemon.send("local:h", "first", "--agent", "alice")
    daemon.send("local:h", "second", "--agent", "alice")
    daemon.send("local:other", "elsewhere", "--agent", "alice")
    assert user_texts(llm.requests("model-a")[-2]) == ["first", "second"]
    assert user_texts(llm.requests("model-a")[-1]) == ["elsewhere"]
    assert daemon.send("local:h", "/new", "--agent", "alice") == "Started a new conversation.\n"
    daemon.send("local:h", "third", "--agent", "alice")
    assert user_texts(llm.requests("model-a")[-1]) == ["third"]
    status = daemon.send("local:h", "/status", "--agent", "alice")
    assert "agent: alice" in status and "model: model-a" in status and "2 messages" in status


def test_session_search_finds_only_this_agents_past(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    daemon.send("local:old", "the launch code is pelican", "--agent", "alice")
    daemon.send("local:bobs", "the launch code is pelican", "--agent", "bob")
    daemon.send("local:old", "/new", "--agent", "alice")
    llm.script("model-a", {"tool_calls": [{"name": "session_search", "arguments": {"query": "pelican"}}]},
               {"reply": "found it"})
    daemon.send("local:old", "what was the code?", "--agent", "alice")
    found = llm.requests("model-a")[-1]["body"]["messages"][-1]["content"]
    assert "[pelican]" in found and "local:old" in found and "local:bobs" not in found


def test_skills_are_listed_in_the_prompt_of_their_agent_only(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    llm.script("model-a", {"tool_calls": [{"name": "skills", "arguments": {
        "action": "create", "name": "brew-tea", "description": "How to brew tea",
        "content": "1. Boil water."}}]}, {"reply": "saved"})
    daemon.send("local:s", "learn to brew", "--agent", "alice")
    assert (daemon.state_dir / "agents/alice/skills/brew-tea/SKILL.md").exists()
    daemon.send("local:s", "hi", "--agent", "alice")
    daemon.send("local:s", "hi", "--agent", "bob")
    assert "brew-tea: How to brew tea" in system_of(llm.requests("model-a")[-1])
    assert "brew-tea" not in system_of(llm.requests("model-b")[-1])


def test_a_tool_cannot_reach_another_agents_files(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    daemon.send("local:x", "hi", "--agent", "bob")  # bob's workspace exists
    bob_memory = daemon.state_dir / "agents/bob/memories/MEMORY.md"
    (daemon.state_dir / "agents/alice/skills/evil").mkdir(parents=True)
    (daemon.state_dir / "agents/alice/skills/evil/SKILL.md").symlink_to(bob_memory)
    llm.script("model-a", {"tool_calls": [{"name": "skills", "arguments": {"action": "view", "name": "evil"}}]},
               {"reply": "done"})
    daemon.send("local:x", "peek", "--agent", "alice")
    result = llm.requests("model-a")[-1]["body"]["messages"][-1]["content"]
    assert result.startswith("error: not allowed") and "outside" in result


def test_send_to_agent_allowed_and_denied(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    llm.script("model-a", {"tool_calls": [{"name": "send_to_agent",
                                           "arguments": {"agent": "bob", "message": "status?"}}]},
               {"reply": "bob says fine"})
    llm.script("model-b", {"reply": "all green"})
    assert daemon.send("local:q", "ask bob", "--agent", "alice") == "bob says fine\n"
    assert llm.requests("model-a")[-1]["body"]["messages"][-1]["content"] == "all green"
    assert user_texts(llm.requests("model-b")[-1]) == ["status?"]

    llm.script("model-b", {"tool_calls": [{"name": "send_to_agent",
                                           "arguments": {"agent": "alice", "message": "hey"}}]},
               {"reply": "could not"})
    assert daemon.send("local:q", "ask alice", "--agent", "bob") == "could not\n"
    refused = llm.requests("model-b")[-1]["body"]["messages"][-1]["content"]
    assert refused == "error: bob may not message alice (not in can_message)"


@pytest.mark.parametrize("failure, message", [
    ({"status": 500}, "The model provider had an error."),
    ({"status": 429, "retry_after": 0}, "rate-limiting"),
    ({"garbage": True}, "could not be read"),
    ({"delay": 3}, "did not answer in time"),
], ids=["500", "429", "garbage", "timeout"])
def test_llm_failure_gives_a_short_error_and_loses_nothing(
    daemon: Daemon, llm: FakeOpenAI, failure: dict, message: str
) -> None:
    start(daemon, llm)
    llm.script("model-a", failure, failure)  # max_retries = 1: both attempts fail
    answer = daemon.send("local:e", "are you there?", "--agent", "alice")
    assert answer.startswith("⚠️") and message in answer
    time.sleep(0.1 if "delay" not in failure else 3.5)  # let the slow fake finish its answers
    llm.reset()
    daemon.send("local:e", "again", "--agent", "alice")
    assert user_texts(llm.requests("model-a")[-1]) == ["are you there?", "again"]


def test_cron_job_fires_into_its_conversation(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    llm.script("model-a", {"tool_calls": [{"name": "cron", "arguments": {
        "action": "create", "schedule": "in 5s", "prompt": "say tick"}}]}, {"reply": "scheduled"})
    assert daemon.send("local:c", "remind me", "--agent", "alice") == "scheduled\n"
    wait_for(lambda: any("say tick" in " ".join(user_texts(r)) for r in llm.requests("model-a")),
             timeout=20, what="cron job run")
    chat = daemon.ctl("chat", "alice", "--session", "c", "--timeout", "10")
    assert chat.returncode == 0, chat.stderr
    assert "fake: [scheduled job 1, in 5s] say tick" in chat.stdout


def test_cron_job_survives_a_daemon_restart(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    llm.script("model-a", {"tool_calls": [{"name": "cron", "arguments": {
        "action": "create", "schedule": "every 5s", "prompt": "water the plants"}}]},
        {"reply": "scheduled"})
    daemon.send("local:p", "schedule it", "--agent", "alice")
    assert daemon.stop() == 0  # down across the due time: the run is made up once
    time.sleep(6)
    llm.reset()
    daemon.start()
    wait_for(lambda: any("water the plants" in " ".join(user_texts(r)) for r in llm.requests("model-a")),
             timeout=20, what="cron job run after restart")


def test_send_file_attaches_a_workspace_file_and_refuses_others(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    daemon.send("local:f", "hi", "--agent", "alice")
    report = daemon.state_dir / "agents/alice/report.txt"
    report.write_text("numbers")
    llm.script("model-a", {"tool_calls": [{"name": "send_file", "arguments": {"path": "report.txt"}}]},
               {"reply": "here it is"})
    assert daemon.send("local:f", "send the report", "--agent", "alice") == \
        f"here it is\n[file: {report}]\n"
    llm.script("model-a", {"tool_calls": [{"name": "send_file", "arguments": {"path": "/etc/passwd"}}]},
               {"reply": "no"})
    assert daemon.send("local:f", "send passwd", "--agent", "alice") == "no\n"
    assert llm.requests("model-a")[-1]["body"]["messages"][-1]["content"].startswith("error: not allowed")
