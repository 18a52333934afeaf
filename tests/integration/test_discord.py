"""The Discord platform end to end: the real daemon, discord.py inside it, and a fake
gateway + REST server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests.harness import Daemon, three_agents, wait_for

GUILD, GENERAL, HELP, THREAD_OWN, THREAD_INHERITS = 10, 101, 102, 201, 202
ALICE, BOB, STRANGER = 501, 502, 599


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        server.add_guild(GUILD, channels=[(GENERAL, "general"), (HELP, "help")],
                         threads=[(THREAD_OWN, GENERAL, "own"), (THREAD_INHERITS, GENERAL, "inherits")],
                         members=[ALICE, BOB, STRANGER])
        yield server


def start(daemon: Daemon, fake: FakeDiscord, extra: str = "", agents: str = "", help_route: str = "",
          platform: str = "", default_agent: str = "a") -> None:
    token_file = daemon.root / "discord.token"
    token_file.write_text(fake.token)
    daemon.write_config(agents or three_agents(), extra=f"""
        [platforms.discord]
        token_file = "{token_file}"
        api_base = "{fake.api_base}"
        gateway_url = "{fake.gateway_url}"
        allowed_users = [{ALICE}, {BOB}]
        {platform}
        [[routes]]
        match = "discord:channel:{GUILD}:{GENERAL}"
        agent = "a"
        [[routes]]
        match = "discord:channel:{GUILD}:{HELP}"
        agent = "b"
        {help_route}
        [[routes]]
        match = "discord:thread:{GUILD}:{GENERAL}:{THREAD_OWN}"
        agent = "c"
        """ + extra, daemon=f'default_agent = "{default_agent}"\n' if default_agent else "")
    daemon.start()
    fake.wait_identified(timeout=15)
    wait_for(lambda: (daemon.status() or {}).get("platforms", {}).get("discord", {}).get("state") == "ready",
             timeout=15, what="discord ready")


def replies(fake: FakeDiscord, channel: int) -> list[str]:
    return [s["content"] for s in fake.sent() if int(s["channel_id"]) == channel and s["content"]]


def test_channels_and_threads_reach_their_agents(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "in general", mention_bot=True)
    fake.channel_message(GUILD, HELP, ALICE, "in help", mention_bot=True)
    fake.thread_message(GUILD, THREAD_OWN, ALICE, "in own thread", mention_bot=True)
    fake.thread_message(GUILD, THREAD_INHERITS, ALICE, "in other thread", mention_bot=True)
    wait_for(lambda: all(replies(fake, c) for c in (GENERAL, HELP, THREAD_OWN, THREAD_INHERITS)),
             what="four answers")
    assert replies(fake, GENERAL) == ["a: in general"]
    assert replies(fake, HELP) == ["b: in help"]
    assert replies(fake, THREAD_OWN) == ["c: in own thread"]
    assert replies(fake, THREAD_INHERITS) == ["a: in other thread"]  # its parent channel's agent


def test_direct_messages_from_allowed_users_only(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.dm(STRANGER, "let me in")
    fake.dm(ALICE, "hello there")
    wait_for(lambda: any(s["content"] == "a: hello there" for s in fake.sent()), what="DM answer")
    time.sleep(0.3)
    assert [s["content"] for s in fake.sent()] == ["a: hello there"]
    assert "discord_user_refused" in daemon.log()


def test_channels_need_a_mention_or_a_reply_unless_the_route_says_otherwise(
    daemon: Daemon, fake: FakeDiscord
) -> None:
    start(daemon, fake, help_route="require_mention = false")
    fake.channel_message(GUILD, GENERAL, ALICE, "talking among ourselves")
    fake.channel_message(GUILD, GENERAL, ALICE, "answering you", reply_to_bot=True)
    fake.channel_message(GUILD, HELP, BOB, "no mention needed here")
    wait_for(lambda: replies(fake, GENERAL) and replies(fake, HELP), what="two answers")
    time.sleep(0.3)
    assert replies(fake, GENERAL) == ["a: answering you"]
    assert replies(fake, HELP) == ["b: no mention needed here"]


def test_long_reply_is_split_at_2000_characters(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    words = " ".join(f"word{i:04d}" for i in range(500))  # ~4,500 characters
    fake.channel_message(GUILD, GENERAL, ALICE, words, mention_bot=True)
    wait_for(lambda: len(replies(fake, GENERAL)) == 3, what="three parts")
    parts = replies(fake, GENERAL)
    assert all(len(part) <= 2000 for part in parts)
    assert " ".join(parts).split() == ("a: " + words).split()


def test_rate_limited_send_is_retried(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.fail("POST", r"/channels/\d+/messages", status=429, retry_after=0.5)
    fake.channel_message(GUILD, GENERAL, ALICE, "despite the limit", mention_bot=True)
    wait_for(lambda: replies(fake, GENERAL), timeout=15, what="answer after 429")
    assert replies(fake, GENERAL) == ["a: despite the limit"]
    assert any(c["status"] == 429 for c in fake.calls())


def test_gateway_resume_loses_no_message(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.disconnect()
    fake.channel_message(GUILD, GENERAL, ALICE, "sent during the gap", mention_bot=True)
    fake.wait_resumed(timeout=20)
    wait_for(lambda: replies(fake, GENERAL), timeout=20, what="answer after resume")
    assert replies(fake, GENERAL) == ["a: sent during the gap"]
    assert daemon.status()["platforms"]["discord"]["state"] == "ready"


def test_parent_killed_after_spooling_answers_each_message_once(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake, agents=three_agents(a_delay=1.0))
    for i in range(3):
        fake.channel_message(GUILD, GENERAL, ALICE, f"crash {i}", mention_bot=True)
    wait_for(lambda: daemon.agents()["a"]["queue"] == 3, what="three messages spooled")
    daemon.kill()
    daemon.start()
    wait_for(lambda: len(replies(fake, GENERAL)) >= 3, timeout=30, what="answers after restart")
    time.sleep(1.5)  # a duplicate would show by now
    assert sorted(replies(fake, GENERAL)) == [f"a: crash {i}" for i in range(3)]


def test_attachments_in_and_files_out(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "look", mention_bot=True,
                         attachments=[("notes.txt", b"meeting at noon")])
    wait_for(lambda: replies(fake, GENERAL), what="answer with attachment")
    assert "[attached file: inbox/" in replies(fake, GENERAL)[0]
    saved = list((daemon.state_dir / "agents/a/inbox").glob("*notes.txt"))
    assert len(saved) == 1 and saved[0].read_bytes() == b"meeting at noon"


def test_files_an_agent_sends_are_uploaded(daemon: Daemon, fake: FakeDiscord) -> None:
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as llm:
        start(daemon, fake, agents=three_agents(a_llm=llm.url))
        (daemon.state_dir / "agents/a/summary.md").write_text("# Summary")
        llm.script("m", {"tool_calls": [{"name": "send_file", "arguments": {"path": "summary.md"}}]},
                   {"reply": "Attached."})
        fake.channel_message(GUILD, GENERAL, ALICE, "summary please", mention_bot=True)
        wait_for(lambda: any(s["files"] for s in fake.sent()), timeout=15, what="upload")
    assert replies(fake, GENERAL) == ["Attached."]
    assert [f for s in fake.sent() for f in s["files"]] == [("summary.md", b"# Summary")]


def test_rejected_token_is_shown_and_the_daemon_carries_on(daemon: Daemon, fake: FakeDiscord) -> None:
    token_file = daemon.root / "discord.token"
    token_file.write_text("not-the-token")
    daemon.write_config('[agents.a]\nruntime = "echo"\n', extra=f"""
        [platforms.discord]
        token_file = "{token_file}"
        api_base = "{fake.api_base}"
        gateway_url = "{fake.gateway_url}"
        allowed_users = "*"
        """)
    daemon.start()
    wait_for(lambda: (daemon.status() or {}).get("platforms", {}).get("discord", {}).get("state")
             == "token rejected", timeout=15, what="token rejected in status")
    assert daemon.send("local:x", "still here", "--agent", "a") == "a: still here\n"
    assert "not-the-token" not in daemon.log()


def test_reply_waits_out_a_closed_session_and_is_delivered(daemon: Daemon, fake: FakeDiscord) -> None:
    """A close discord.py does not reconnect after (4004) ends its client; hermesd makes a
    new one, and the reply that was being worked on meanwhile still arrives."""
    start(daemon, fake, agents=three_agents(a_delay=1.0))
    fake.channel_message(GUILD, GENERAL, ALICE, "through the storm", mention_bot=True)
    time.sleep(0.2)
    fake.disconnect(4004)
    wait_for(lambda: replies(fake, GENERAL), timeout=30, what="reply after a new session")
    assert replies(fake, GENERAL) == ["a: through the storm"]
    assert daemon.process is not None and daemon.process.poll() is None
    assert fake.identified >= 2


def test_role_holders_may_talk_and_typing_is_shown(daemon: Daemon, fake: FakeDiscord) -> None:
    helper_role = 9001
    fake.add_guild(GUILD + 1, channels=[(301, "staff")], members=[STRANGER], roles={helper_role: [STRANGER]})
    start(daemon, fake, platform=f"allowed_roles = [{helper_role}]", agents=three_agents(a_delay=2.0))
    fake.channel_message(GUILD + 1, 301, STRANGER, "staff question", mention_bot=True)
    wait_for(lambda: replies(fake, 301), timeout=15, what="answer to a role holder")
    assert replies(fake, 301) == ["a: staff question"]
    assert any("/channels/301/typing" in c["path"] for c in fake.calls())


def test_malformed_gateway_event_costs_a_reconnect_not_the_platform(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.raw_event("MESSAGE_CREATE", {"id": "1", "content": "no channel, no author"})
    wait_for(lambda: fake.wait_identified(timeout=0.1, count=2), timeout=30, what="a new connection")
    wait_for(lambda: daemon.status()["platforms"]["discord"]["state"] == "ready", timeout=15,
             what="discord ready again")
    fake.channel_message(GUILD, GENERAL, ALICE, "still there?", mention_bot=True)
    wait_for(lambda: replies(fake, GENERAL) == ["a: still there?"], what="answer after the reconnect")
    assert "discord_connect_failed" in daemon.log()


def test_reply_cut_short_by_a_crash_goes_on_from_its_next_part(daemon: Daemon, fake: FakeDiscord) -> None:
    """A reply in three parts: the first is out, the second waits out a long 429 when
    hermesd is killed.  After the restart the channel has each part once, in order."""
    words = [f"w{i}" for i in range(1000)]  # "a: w0 w1 ...": 4,892 characters
    start(daemon, fake)
    fake.fail("POST", rf"/channels/{GENERAL}/messages$", retry_after=60, after=1)
    fake.channel_message(GUILD, GENERAL, ALICE, " ".join(words), mention_bot=True)
    wait_for(lambda: any(c["status"] == 429 for c in fake.calls()), what="the second part held")
    daemon.kill()
    daemon.start()
    wait_for(lambda: replies(fake, GENERAL) and replies(fake, GENERAL)[-1].endswith("w999"), timeout=20,
             what="the last part")
    time.sleep(0.5)  # a part sent twice would show up by now
    parts = replies(fake, GENERAL)
    assert len(parts) == 3 and " ".join(parts).split() == ["a:", *words]
    assert "reply_resumed" in daemon.log() and "from_part=2" in daemon.log()
