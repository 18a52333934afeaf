"""The hermes runtime: the real hermes-agent in real workers, against the fake
OpenAI-compatible server on 127.0.0.1, driven through hermesctl."""

from __future__ import annotations

import json

import psutil

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import Daemon, wait_for
from tests.integration.hermes_setup import config, require_hermes

require_hermes()


def start(daemon: Daemon, llm: FakeOpenAI, env: dict[str, str] | None = None, telegram: str = "") -> None:
    daemon.write_config(config(llm, f"""
[agents.alice]
runtime = "hermes"
[agents.bob]
runtime = "hermes"
llm = {{ base_url = "{llm.url}", model = "model-b", timeout = 5, max_retries = 0 }}
{telegram}"""))
    daemon.start(env=env)


def chat_requests(llm: FakeOpenAI, model: str) -> list[dict]:
    return [r for r in llm.requests(model) if r["path"].endswith("/chat/completions")]


def system_of(request: dict) -> str:
    return "\n".join(m["content"] for m in request["body"]["messages"] if m["role"] == "system")


def texts(request: dict) -> str:
    return "\n".join(str(m.get("content")) for m in request["body"]["messages"])


FORUM, USER = -1001, 42


def test_each_hermes_agent_answers_in_its_own_topic_with_its_own_soul(
    daemon: Daemon, llm: FakeOpenAI
) -> None:
    with FakeTelegram() as telegram:
        token_file = daemon.root / "telegram.token"
        token_file.write_text(telegram.token + "\n")
        start(daemon, llm, telegram=f"""
[platforms.telegram]
token_file = "{token_file}"
api_base = "{telegram.url}"
allowed_users = [{USER}]
[[routes]]
match = "telegram:topic:{FORUM}:10"
agent = "alice"
[[routes]]
match = "telegram:topic:{FORUM}:11"
agent = "bob"
""")
        (daemon.state_dir / "agents/alice/SOUL.md").write_text("You are Alice the pirate.")
        (daemon.state_dir / "agents/bob/SOUL.md").write_text("You are Bob the gardener.")
        telegram.topic_message(FORUM, 10, USER, "hello alice", mention=True)
        telegram.topic_message(FORUM, 11, USER, "hello bob", mention=True)
        wait_for(lambda: len(telegram.sent("sendMessage")) == 2, timeout=30, what="two answers")
        answers = {int(c["params"]["message_thread_id"]): c["params"]["text"]
                   for c in telegram.sent("sendMessage")}
    assert set(answers) == {10, 11}  # fake: <the message, with its mention of the bot>
    assert answers[10].endswith("hello alice") and answers[11].endswith("hello bob")
    alice, bob = chat_requests(llm, "model-a")[-1], chat_requests(llm, "model-b")[-1]
    assert "Alice the pirate" in system_of(alice) and "Bob the gardener" not in system_of(alice)
    assert "Bob the gardener" in system_of(bob) and "Alice the pirate" not in system_of(bob)


def test_hermes_runs_where_hermesd_is_found_through_an_import_hook(daemon: Daemon, llm: FakeOpenAI) -> None:
    """An editable install (pip install -e, as scripts/run makes) finds hermesd's packages
    through an import hook, not sys.path: Landlock must still let the worker read them,
    since it imports the hermes runtime's module only when it needs it."""
    start(daemon, llm, env={"PYTHONPATH": ""})
    assert daemon.send("local:a", "hello", "--agent", "alice") == "fake: hello\n"


def test_zygote_keeps_no_thread_or_file_of_its_hermes_warm_up(daemon: Daemon, llm: FakeOpenAI) -> None:
    """The zygote runs one hermes turn before any fork (workers share what it builds); the
    log files and the log thread that turn starts must not outlive it, or every worker
    would inherit them.  Each worker logs into its own workspace instead."""
    start(daemon, llm)
    zygote = psutil.Process(daemon.zygote_pid())
    assert zygote.num_threads() == 1
    assert {f.path for f in zygote.open_files()} == {str(daemon.log_path)}  # its stderr
    assert daemon.send("local:a", "hello", "--agent", "alice") == "fake: hello\n"
    worker = psutil.Process(daemon.agents()["alice"]["pid"])
    logs = {f.path for f in worker.open_files() if f.path.endswith(".log")} - {str(daemon.log_path)}
    assert logs == {str(daemon.state_dir / "agents/alice/logs" / name) for name in ("agent.log", "errors.log")}


def test_hermes_conversation_survives_a_worker_restart(daemon: Daemon, llm: FakeOpenAI) -> None:
    start(daemon, llm)
    assert daemon.send("local:a", "my boat is called Sea Lark", "--agent", "alice")
    old_pid = daemon.agents()["alice"]["pid"]
    assert daemon.ctl("restart", "alice").returncode == 0
    wait_for(lambda: daemon.agent_running("alice", other_than=old_pid), what="alice restarted")
    assert daemon.send("local:a", "what is my boat called?", "--agent", "alice")
    second = chat_requests(llm, "model-a")[-1]
    assert "Sea Lark" in texts(second) and "what is my boat called?" in texts(second)


def test_new_starts_a_hermes_conversation_without_the_old_history(
    daemon: Daemon, llm: FakeOpenAI
) -> None:
    start(daemon, llm)
    assert daemon.send("local:a", "remember the word Tamarind", "--agent", "alice")
    assert daemon.send("local:a", "/new", "--agent", "alice") == "Started a new conversation.\n"
    assert "0 messages" in daemon.send("local:a", "/status", "--agent", "alice")
    assert daemon.send("local:a", "hello again", "--agent", "alice")
    assert "Tamarind" not in texts(chat_requests(llm, "model-a")[-1])


def test_hermes_memory_tool_writes_only_that_agents_memories(
    daemon: Daemon, llm: FakeOpenAI
) -> None:
    start(daemon, llm)
    llm.script("model-a",
               {"tool_calls": [{"name": "memory", "arguments": {
                   "action": "add", "target": "user", "content": "Prefers tea over coffee"}}]},
               {"reply": "Noted."})
    assert daemon.send("local:a", "remember: I like tea", "--agent", "alice") == "Noted.\n"
    agents = daemon.state_dir / "agents"
    assert "Prefers tea over coffee" in (agents / "alice/memories/USER.md").read_text()
    assert "tea" not in (agents / "bob/memories/USER.md").read_text()


def test_hermes_agent_with_llm_profile_calls_its_own_config_yaml_model(
    daemon: Daemon, llm: FakeOpenAI
) -> None:
    """`llm = "profile"`: the model, provider and key are the profile's own (config.yaml and
    .env in the workspace), as `hermes gateway` would call them, whatever [llm.default] says."""
    workspace = daemon.state_dir / "agents/carol"
    workspace.mkdir(parents=True)
    (workspace / "config.yaml").write_text(
        f"model:\n  provider: custom\n  base_url: {llm.url}\n  default: model-p\n"
        "  api_key: ${CAROL_KEY}\n")
    (workspace / ".env").write_text("CAROL_KEY=sk-carols-own\n")
    daemon.write_config(config(llm, '[agents.carol]\nruntime = "hermes"\nllm = "profile"\n'))
    daemon.start()
    assert daemon.send("local:c", "hello", "--agent", "carol") == "fake: hello\n"
    (request,) = chat_requests(llm, "model-p")
    assert request["headers"]["authorization"] == "Bearer sk-carols-own"
    assert chat_requests(llm, "model-a") == []
    assert "model: model-p" in daemon.send("local:c", "/status", "--agent", "carol")


def tool_results(request: dict) -> str:
    return "\n".join(str(m.get("content")) for m in request["body"]["messages"] if m["role"] == "tool")


def test_hermes_tools_know_the_agents_own_home_not_the_zygotes(daemon: Daemon, llm: FakeOpenAI) -> None:
    """hermes-agent computes paths from its home when imported, which is in the zygote (in a
    temporary home, deleted before any fork): the worker's tools must read and write its own
    workspace, and nothing the model is told (tool schemas, prompts) may name the other."""
    start(daemon, llm)
    skill = daemon.state_dir / "agents/alice/skills/brewing/SKILL.md"
    skill.parent.mkdir(parents=True)
    skill.write_text("---\nname: brewing\ndescription: How to brew tea\n---\nSteep 3 minutes.\n")
    llm.script("model-a",
               {"tool_calls": [{"name": "skill_view", "arguments": {"name": "brewing"}}]},
               {"reply": "Done."})
    assert daemon.send("local:a", "how do I brew?", "--agent", "alice") == "Done.\n"
    requests = chat_requests(llm, "model-a")
    assert "Steep 3 minutes." in tool_results(requests[-1])
    assert [r for r in requests if "hermesd-hermes-" in json.dumps(r["body"])] == []


def zygote_maps(daemon: Daemon) -> str:
    with open(f"/proc/{daemon.zygote_pid()}/maps") as maps:
        return maps.read()


def test_first_hermes_agent_a_reload_adds_is_loaded_into_the_zygote(daemon: Daemon, llm: FakeOpenAI) -> None:
    """Without a hermes agent at start the zygote leaves hermes-agent out (it costs ~50
    MiB); the first one a reload adds has the zygote load it, so it and later ones share it."""
    daemon.write_config(config(llm, '[agents.e]\nruntime = "echo"\n'))
    daemon.start()
    assert "pydantic_core" not in zygote_maps(daemon)  # what hermes-agent's SDK loads
    daemon.write_config(config(llm, '[agents.e]\nruntime = "echo"\n[agents.alice]\nruntime = "hermes"\n'))
    assert daemon.ctl("reload", "--wait").returncode == 0
    wait_for(lambda: daemon.agent_running("alice"), timeout=30, what="alice running")
    assert "pydantic_core" in zygote_maps(daemon)
    assert daemon.send("local:a", "hello", "--agent", "alice") == "fake: hello\n"
