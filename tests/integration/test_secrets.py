"""Secrets in the daemon's environment: each worker gets its own agent's API key and
nothing else, and no secret reaches a log line or `hermesctl status`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon

SECRETS = {"DISCORD_TOKEN": "secret-discord-xyz", "KEY_A": "sk-agent-a-1111",
           "KEY_B": "sk-agent-b-2222"}


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon inherits the test's environment, as it would an EnvironmentFile's."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEY_MISSING", raising=False)


def start(daemon: Daemon, llm: FakeOpenAI) -> None:
    daemon.write_config(f"""
        [agents.a]
        runtime = "openai"
        llm = {{ base_url = "{llm.url}", model = "model-a", api_key_env = "KEY_A" }}
        [agents.b]
        runtime = "openai"
        llm = {{ base_url = "{llm.url}", model = "model-b", api_key_env = "KEY_B" }}
        [agents.c]
        runtime = "openai"
        llm = {{ base_url = "{llm.url}", model = "model-c", api_key_env = "KEY_MISSING" }}
        """)
    daemon.start()


def environ_of(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return environ.read().decode(errors="replace")


def test_each_agent_calls_its_model_with_its_own_key(
    daemon: Daemon, llm: FakeOpenAI, secret_env: None
) -> None:
    start(daemon, llm)
    assert daemon.send("local:x", "hi", "--agent", "a") == "fake: hi\n"
    assert daemon.send("local:x", "hi", "--agent", "b") == "fake: hi\n"
    assert llm.requests("model-a")[-1]["headers"]["authorization"] == f"Bearer {SECRETS['KEY_A']}"
    assert llm.requests("model-b")[-1]["headers"]["authorization"] == f"Bearer {SECRETS['KEY_B']}"


def test_no_worker_or_zygote_environment_shows_a_secret(
    daemon: Daemon, llm: FakeOpenAI, secret_env: None
) -> None:
    start(daemon, llm)
    daemon.send("local:x", "hi", "--agent", "a")  # a has built its client with its key
    pids = [daemon.zygote_pid(), *(agent["pid"] for agent in daemon.agents().values())]
    for pid in pids:
        environ = environ_of(pid)
        assert not [name for name, value in SECRETS.items() if value in environ], pid


def test_a_missing_key_is_told_in_the_chat_and_logged_without_secrets(
    daemon: Daemon, llm: FakeOpenAI, secret_env: None
) -> None:
    start(daemon, llm)
    answer = daemon.send("local:x", "hi", "--agent", "c")
    assert answer == "⚠️ The model's API key is missing; please ask the operator to check it.\n"
    assert not llm.requests("model-c")
    assert "environment variable KEY_MISSING is not set or empty" in daemon.log()


def test_secrets_reach_neither_the_log_nor_status(
    daemon: Daemon, llm: FakeOpenAI, secret_env: None
) -> None:
    start(daemon, llm)
    llm.script("model-a", {"status": 401})
    assert "refused the API key" in daemon.send("local:x", "hi", "--agent", "a")
    daemon.send("local:x", "hi", "--agent", "b")
    status = daemon.ctl("--json", "status").stdout
    agents = daemon.ctl("--json", "agents").stdout
    assert json.loads(status)["agents"]
    for text in (status, agents, daemon.log()):
        assert not [name for name, value in SECRETS.items() if value in text]


def memory_holds(pid: int, secrets: dict[str, str]) -> set[str]:
    """Names of the `secrets` whose value is anywhere in `pid`'s readable memory."""
    found: set[str] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue  # [vvar] and the like
            found |= {name for name, value in secrets.items() if value.encode() in chunk}
    return found


def test_a_worker_memory_holds_its_own_key_and_no_other_secret(
    daemon: Daemon, llm: FakeOpenAI, secret_env: None
) -> None:
    """Not only its environment: nothing the daemon read is in the zygote's or a worker's
    memory (the zygote is a fresh interpreter), only the one key the worker was given."""
    start(daemon, llm)
    for agent in ("a", "b"):  # each has built its client with its key
        daemon.send("local:x", "hi", "--agent", agent)
    agents = daemon.agents()
    try:
        held = {agent: memory_holds(agents[agent]["pid"], SECRETS) for agent in ("a", "b", "c")}
        held["zygote"] = memory_holds(daemon.zygote_pid(), SECRETS)
    except PermissionError as exc:
        pytest.skip(f"cannot read another process's memory here: {exc}")
    assert held == {"a": {"KEY_A"}, "b": {"KEY_B"}, "c": set(), "zygote": set()}
