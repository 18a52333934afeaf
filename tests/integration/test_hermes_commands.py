"""The hermes runtime's own chat commands (/model, /memory, /stop, /undo, /retry, /title,
skills' commands), in real workers
against the fake OpenAI-compatible server, driven through hermesctl."""

from __future__ import annotations

import psutil
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon, wait_for
from tests.integration.hermes_setup import config, require_hermes

require_hermes()


@pytest.fixture
def alice(daemon: Daemon, llm: FakeOpenAI) -> Daemon:
    daemon.write_config(config(llm, """
[agents.alice]
runtime = "hermes"
tools = ["memory", "terminal", "skills"]
""", timeout=30))
    daemon.start()
    return daemon


def ask(daemon: Daemon, text: str, key: str = "local:a") -> str:
    return daemon.send(key, text, "--agent", "alice")


def chats(llm: FakeOpenAI) -> list[dict]:
    return [r for r in llm.requests() if r["path"].endswith("/chat/completions")]


def test_model_shows_the_configured_model(alice: Daemon) -> None:
    assert ask(alice, "/model").startswith("model: model-a\n")


def test_model_switch_changes_only_that_conversations_model(
    alice: Daemon, llm: FakeOpenAI
) -> None:
    assert "until the agent restarts" in ask(alice, "/model model-b")
    assert ask(alice, "hello") == "fake: hello\n"
    assert ask(alice, "hi", key="local:other") == "fake: hi\n"
    assert [r["body"]["model"] for r in chats(llm)] == ["model-b", "model-a"]
    assert "model: model-b" in ask(alice, "/status")


def test_model_rejects_a_name_that_is_no_model(alice: Daemon) -> None:
    assert "is not a model name" in ask(alice, "/model rm -rf /")
    assert ask(alice, "/model").startswith("model: model-a\n")


def test_memory_shows_what_the_agent_remembers(alice: Daemon) -> None:
    memories = alice.state_dir / "agents/alice/memories"
    memories.joinpath("MEMORY.md").write_text("The boat is the Sea Lark\n§\nDeploys on Fridays")
    memories.joinpath("USER.md").write_text("Prefers tea")
    answer = ask(alice, "/memory")
    assert "MEMORY.md (notes): 2 entries" in answer and "- Deploys on Fridays" in answer
    assert "USER.md (about you): 1 entries\n- Prefers tea" in answer


def test_stop_interrupts_the_running_answer(alice: Daemon, llm: FakeOpenAI) -> None:
    llm.script("model-a", {"delay": 20, "reply": "too late"})
    sender = alice.ctl_popen("send", "local:a", "write me an essay", "--agent", "alice")
    wait_for(lambda: chats(llm), what="the model asked")
    assert ask(alice, "/stop") == "Stopping.\n"
    out, _ = sender.communicate(timeout=15)  # the session's chat shows both replies
    assert out.endswith("Stopped.\n") and "too late" not in out


def test_stop_with_nothing_running_says_so(alice: Daemon) -> None:
    assert ask(alice, "/stop") == "Nothing is running in this conversation.\n"


def sleeping(daemon: Daemon) -> list[psutil.Process]:
    """The `sleep 300` processes below the daemon."""
    found = []
    for process in daemon.children():
        try:
            if process.cmdline()[:2] == ["sleep", "300"]:
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def test_stop_kills_the_turns_background_processes(alice: Daemon, llm: FakeOpenAI) -> None:
    llm.script("model-a", {"tool_calls": [{"name": "terminal", "arguments": {
        "command": "sleep 300", "background": True}}]}, {"delay": 20, "reply": "too late"})
    sender = alice.ctl_popen("send", "local:a", "start a server", "--agent", "alice")
    wait_for(lambda: len(chats(llm)) == 2 and sleeping(alice), what="the background process")
    assert ask(alice, "/stop") == "Stopping.\n"
    sender.communicate(timeout=15)
    wait_for(lambda: not sleeping(alice), what="the background process killed")


def user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["body"]["messages"] if m["role"] == "user"]


def test_undo_takes_back_the_last_messages_and_their_answers(alice: Daemon, llm: FakeOpenAI) -> None:
    for text in ("one", "two", "three"):
        assert ask(alice, text) == f"fake: {text}\n"
    assert ask(alice, "/undo 2") == "Took back 2 message(s), from: two\n"
    assert ask(alice, "four") == "fake: four\n"
    assert user_texts(chats(llm)[-1]) == ["one", "four"]


def test_undo_refuses_what_is_not_a_count(alice: Daemon) -> None:
    assert "takes a number of messages" in ask(alice, "/undo everything")


def test_retry_asks_the_last_message_again_without_its_old_answer(
    alice: Daemon, llm: FakeOpenAI
) -> None:
    assert ask(alice, "/retry") == "Nothing to retry in this conversation.\n"
    llm.script("model-a", {"reply": "a bad answer"}, {"reply": "a better answer"})
    assert ask(alice, "what is 6 x 7?") == "a bad answer\n"
    assert ask(alice, "/retry") == "a better answer\n"
    retried = chats(llm)[-1]["body"]["messages"]
    assert user_texts(chats(llm)[-1]) == ["what is 6 x 7?"]
    assert "a bad answer" not in str(retried)


def test_title_names_the_conversation(alice: Daemon) -> None:
    assert "not started yet" in ask(alice, "/title Boat repairs")
    assert ask(alice, "hello") == "fake: hello\n"
    assert ask(alice, "/title Boat repairs") == "title: Boat repairs\n"
    assert ask(alice, "/title") == "title: Boat repairs\n"


def test_a_skills_command_asks_with_that_skills_instructions(alice: Daemon, llm: FakeOpenAI) -> None:
    skill = alice.state_dir / "agents/alice/skills/brew-tea/SKILL.md"
    skill.parent.mkdir(parents=True)
    skill.write_text("---\nname: brew-tea\ndescription: How to brew tea\n---\nSteep 3 minutes.\n")
    assert ask(alice, "/brew_tea green please").startswith("fake: ")
    (asked,) = user_texts(chats(llm)[-1])
    assert "Steep 3 minutes." in asked and "green please" in asked
