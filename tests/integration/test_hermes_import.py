"""`hermesctl import-profile --runtime hermes`: a profile made by hermes-agent itself keeps
its sessions and cron jobs under hermesd, against the fake OpenAI server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon, wait_for
from tests.integration.hermes_setup import config, require_hermes

require_hermes()


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile with one old session, written by hermes-agent's own SessionDB (the test
    process's hermes home is the profile, never the real ~/.hermes)."""
    home = tmp_path / "profiles" / "travel"
    (home / "memories").mkdir(parents=True)
    (home / "SOUL.md").write_text("You are a travel planner.\n")
    (home / "config.yaml").write_text("model:\n  default: some-model\n")
    monkeypatch.setenv("HERMES_HOME", str(home))
    from hermes_state import SessionDB

    db = SessionDB(db_path=home / "state.db")
    db.create_session("old-trip", "cli")
    db.append_message("old-trip", "user", "Book the ferry to Zanzibar for March")
    db.append_message("old-trip", "assistant", "The ferry to Zanzibar is booked.")
    db.close()
    return home


def add_due_job(home: Path, prompt: str) -> None:
    """A recurring job, due a few seconds ago, as hermes' `cronjob` tool makes one."""
    from cron import jobs

    with jobs.use_cron_store(home):
        job = jobs.create_job(prompt=prompt, schedule="every 1h", name="fare watch",
                              origin={"platform": "telegram", "chat_id": "4242"})
        past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
        jobs.update_job(job["id"], {"next_run_at": past})


def import_and_start(daemon: Daemon, llm: FakeOpenAI, profile: Path) -> Path:
    daemon.write_config(config(llm, ""))
    daemon.start()
    result = daemon.ctl("import-profile", str(profile), "--as", "travel", "--runtime", "hermes",
                        "--reload")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: daemon.agent_running("travel"), what="imported agent running")
    return daemon.state_dir / "agents" / "travel"


def tool_results(llm: FakeOpenAI) -> str:
    return "\n".join(str(m.get("content")) for r in llm.requests("model-a")
                     if r["path"].endswith("/chat/completions")
                     for m in r["body"]["messages"] if m["role"] == "tool")


def test_imported_hermes_profile_finds_its_old_session(
    daemon: Daemon, llm: FakeOpenAI, profile: Path
) -> None:
    workspace = import_and_start(daemon, llm, profile)
    assert "some-model" in (workspace / "config.yaml").read_text()
    llm.script("model-a",
               {"tool_calls": [{"name": "session_search", "arguments": {"query": "Zanzibar"}}]},
               {"reply": "You went to Zanzibar."})
    assert daemon.send("local:t", "where did I go by ferry?", "--agent", "travel")
    assert "ferry to Zanzibar" in tool_results(llm)


def test_imported_hermes_cron_job_answers_in_the_agents_conversation(
    daemon: Daemon, llm: FakeOpenAI, profile: Path
) -> None:
    add_due_job(profile, "check the ferry fares")
    workspace = import_and_start(daemon, llm, profile)
    # No conversation yet, so the job waits; it fires in the first one, after its first turn.
    assert daemon.send("local:trips", "hello", "--agent", "travel") == "fake: hello\n"
    wait_for(lambda: any("check the ferry fares" in json.dumps(r["body"])
                         for r in llm.requests("model-a")), timeout=20, what="the job's turn")
    chat = daemon.ctl("chat", "travel", "--session", "trips", "--timeout", "10")
    assert chat.returncode == 0, chat.stderr
    assert "fake: [scheduled job fare watch, every 60m] check the ferry fares" in chat.stdout
    stored = json.loads((workspace / "cron" / "jobs.json").read_text())["jobs"][0]
    assert stored["last_run_at"] is not None
