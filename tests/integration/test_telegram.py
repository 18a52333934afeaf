"""The Telegram platform end to end: the real daemon, python-telegram-bot inside it, and a
fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.fakes.telegram_server import FakeTelegram
from tests.harness import Daemon, three_agents, wait_for

FORUM, GROUP = -1001, -2002
ALICE, BOB, STRANGER = 42, 43, 99


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def start(daemon: Daemon, fake: FakeTelegram, agents: str = "", extra: str = "", mention: bool = True) -> None:
    token_file = daemon.root / "telegram.token"
    token_file.write_text(fake.token + "\n")
    daemon.write_config(
        agents or three_agents(),
        extra=f"""
        [platforms.telegram]
        token_file = "{token_file}"
        api_base = "{fake.url}"
        allowed_users = [{ALICE}, {BOB}]
        require_mention_in_groups = {str(mention).lower()}
        [[routes]]
        match = "telegram:topic:{FORUM}:10"
        agent = "a"
        [[routes]]
        match = "telegram:topic:{FORUM}:11"
        agent = "b"
        [[routes]]
        match = "telegram:topic:{FORUM}:12"
        agent = "c"
        [[routes]]
        match = "telegram:group:{GROUP}:{BOB}"
        agent = "b"
        """ + extra,
        daemon='default_agent = "a"\n',
    )
    daemon.start()
    wait_for(lambda: fake.calls("setMyCommands"), what="bot connected")


def texts(fake: FakeTelegram, chat: int | None = None) -> list[str]:
    return [c["params"]["text"] for c in fake.sent("sendMessage")
            if chat is None or str(c["params"]["chat_id"]) == str(chat)]


def test_each_forum_topic_is_answered_by_its_agent_in_its_topic(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    for topic in (10, 11, 12):
        fake.topic_message(FORUM, topic, ALICE, f"hello topic {topic}", mention=True)
    wait_for(lambda: len(fake.sent("sendMessage")) == 3, what="three answers")
    answers = {int(c["params"]["message_thread_id"]): c["params"]["text"] for c in fake.sent("sendMessage")}
    assert set(answers) == {10, 11, 12}
    for topic, agent in ((10, "a"), (11, "b"), (12, "c")):
        assert answers[topic].startswith(f"{agent}: ") and f"hello topic {topic}" in answers[topic]


def test_general_topic_reply_has_no_thread_id(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.group_message(FORUM, ALICE, "in general", mention=True, forum=True)
    wait_for(lambda: fake.sent("sendMessage"), what="answer")
    assert "message_thread_id" not in fake.sent("sendMessage")[0]["params"]


def test_dm_and_per_user_group_keys(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.private_message(ALICE, "hi in private")
    wait_for(lambda: texts(fake, ALICE), what="DM answer")
    assert texts(fake, ALICE) == ["a: hi in private"]
    fake.group_message(GROUP, ALICE, "no mention, no answer")
    fake.group_message(GROUP, ALICE, "from alice", mention=True)
    fake.group_message(GROUP, BOB, "from bob", mention=True)
    wait_for(lambda: len(texts(fake, GROUP)) == 2, what="two group answers")
    time.sleep(0.3)
    answered = sorted(texts(fake, GROUP))
    assert answered[0].startswith("a: ") and "from alice" in answered[0]
    assert answered[1].startswith("b: ") and "from bob" in answered[1]  # the per-user route


def test_stranger_gets_one_polite_refusal_and_no_agent_time(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.private_message(STRANGER, "let me in")
    fake.private_message(STRANGER, "please")
    fake.private_message(ALICE, "after")  # processed after both: a marker
    wait_for(lambda: texts(fake, ALICE), what="alice answered")
    assert texts(fake, STRANGER) == ["Sorry, this bot only talks to people it was set up for."]
    assert all(info["queue"] == 0 for info in daemon.agents().values())
    assert "telegram_user_refused" in daemon.log()


def test_malformed_update_is_skipped_and_the_next_one_answered(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.queue({"update_id": 5000, "message": {"message_id": "x", "chat": "not a chat", "date": None}})
    fake.private_message(ALICE, "still there?")
    wait_for(lambda: texts(fake, ALICE), what="answer after a bad update")
    assert texts(fake, ALICE) == ["a: still there?"]
    assert "telegram_update_skipped" in daemon.log()


def test_long_reply_is_split_within_telegram_limits(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.private_message(ALICE, "😀" * 4000)
    wait_for(lambda: len(texts(fake, ALICE)) >= 2, what="a split answer")
    time.sleep(1.5)  # every part
    parts = texts(fake, ALICE)
    assert all(len(part.encode("utf-16-le")) // 2 <= 4096 for part in parts)
    assert len(parts) == 2  # 8,003 units: two messages, cut only at whitespace or between emoji
    assert "".join("".join(parts).split()) == "a:" + "😀" * 4000


def test_replies_respect_the_per_chat_flood_limit(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    for i in range(4):
        fake.private_message(ALICE, f"burst {i}")
    wait_for(lambda: len(texts(fake, ALICE)) == 4, timeout=20, what="four answers")
    times = sorted(c["time"] for c in fake.sent("sendMessage"))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.95  # at most one message per second to one chat


def test_retry_after_is_honoured_and_nothing_is_lost(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.fail("sendMessage", {"error_code": 429, "retry_after": 1})
    fake.private_message(ALICE, "slow down")
    wait_for(lambda: texts(fake, ALICE), timeout=15, what="answer after 429")
    assert texts(fake, ALICE) == ["a: slow down"]
    refused = [c for c in fake.calls("sendMessage") if c["status"] == 429]
    assert len(refused) == 1 and fake.sent("sendMessage")[0]["time"] - refused[0]["time"] >= 0.95


def test_revoked_token_is_shown_in_status(daemon: Daemon, fake: FakeTelegram) -> None:
    fake.fail("*", {"error_code": 401, "description": "Unauthorized"})
    token_file = daemon.root / "telegram.token"
    token_file.write_text(fake.token)
    daemon.write_config('[agents.a]\nruntime = "echo"\n', extra=f"""
        [platforms.telegram]
        token_file = "{token_file}"
        api_base = "{fake.url}"
        allowed_users = "*"
        """)
    daemon.start()
    wait_for(lambda: (daemon.status() or {}).get("platforms", {}).get("telegram", {}).get("state")
             == "token rejected", what="token rejected in status")
    assert "telegram token rejected" in daemon.ctl("status").stdout
    assert fake.token not in daemon.log()


def test_commands_reach_the_agent_and_are_registered(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    names = fake.calls("setMyCommands")[0]["params"]["commands"]
    assert {c["command"] for c in names} == {"new", "reset", "status", "help"}
    fake.group_message(GROUP, ALICE, "/status")  # a command needs no mention
    wait_for(lambda: texts(fake, GROUP), what="command answered")
    assert texts(fake, GROUP) == ["a: /status"]


def test_documents_land_in_the_agents_inbox(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.document_message(ALICE, ALICE, b"quarterly numbers", file_name="report.txt", caption="see this")
    wait_for(lambda: texts(fake, ALICE), what="answer with the file")
    answer = texts(fake, ALICE)[0]
    assert "see this" in answer and "[attached file: inbox/" in answer
    saved = list((daemon.state_dir / "agents/a/inbox").glob("*report.txt"))
    assert len(saved) == 1 and saved[0].read_bytes() == b"quarterly numbers"


def test_parent_killed_between_spool_and_reply_answers_each_message_once(
    daemon: Daemon, fake: FakeTelegram
) -> None:
    start(daemon, fake, agents=three_agents(a_delay=1.0))
    for i in range(3):
        fake.topic_message(FORUM, 10, ALICE, f"crash {i}", mention=True)
    wait_for(lambda: daemon.agents()["a"]["queue"] == 3, what="three messages spooled")
    daemon.kill()
    daemon.start()
    wait_for(lambda: len(texts(fake, FORUM)) >= 3, timeout=30, what="answers after restart")
    time.sleep(1.5)  # a duplicate would show up by now
    answers = sorted(texts(fake, FORUM))
    assert len(answers) == 3 and all(f"crash {i}" in answers[i] for i in range(3))


def test_files_an_agent_sends_go_out_as_document_and_photo(daemon: Daemon, fake: FakeTelegram) -> None:
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as llm:
        start(daemon, fake, agents=three_agents(a_llm=llm.url))
        workspace = daemon.state_dir / "agents/a"
        wait_for(lambda: (workspace / "SOUL.md").exists(), what="workspace")
        (workspace / "report.pdf").write_bytes(b"%PDF-1.4 fake")
        (workspace / "chart.png").write_bytes(b"\x89PNG fake")
        llm.script("m", {"tool_calls": [{"name": "send_file", "arguments": {"path": "report.pdf"}},
                                        {"name": "send_file", "arguments": {"path": "chart.png"}}]},
                   {"reply": "Both attached."})
        fake.private_message(ALICE, "send me the files")
        wait_for(lambda: fake.sent("sendPhoto"), timeout=15, what="photo sent")
    assert texts(fake, ALICE) == ["Both attached."]
    document = fake.sent("sendDocument")[0]["params"]["document"]
    photo = fake.sent("sendPhoto")[0]["params"]["photo"]
    assert document["filename"] == "report.pdf" and document["size"] == len(b"%PDF-1.4 fake")
    assert photo["filename"] == "chart.png"


def test_polling_recovers_from_conflict_and_server_errors(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake)
    fake.fail("getUpdates", {"error_code": 409, "description": "Conflict: terminated by other getUpdates request"},
              {"error_code": 502, "description": "Bad Gateway"})
    wait_for(lambda: daemon.log().count("telegram_poll_failed") == 2, timeout=20, what="both poll errors")
    assert "Conflict" in daemon.log() and "Bad Gateway" in daemon.log()
    fake.private_message(ALICE, "after the storm")
    wait_for(lambda: texts(fake, ALICE), timeout=20, what="answer after poll errors")
    assert texts(fake, ALICE) == ["a: after the storm"]
    assert daemon.status()["platforms"]["telegram"]["state"] == "polling"


def test_typing_is_shown_while_the_agent_works(daemon: Daemon, fake: FakeTelegram) -> None:
    start(daemon, fake, agents=three_agents(a_delay=2.0))
    fake.topic_message(FORUM, 10, ALICE, "think first", mention=True)
    wait_for(lambda: texts(fake, FORUM), what="answer")
    typing = fake.calls("sendChatAction")
    assert typing and typing[0]["params"]["action"] == "typing"
    assert int(typing[0]["params"]["message_thread_id"]) == 10
    assert typing[0]["time"] < fake.sent("sendMessage")[0]["time"]


def test_message_sent_while_the_daemon_drains_stays_with_telegram_and_is_answered_after(
    daemon: Daemon, fake: FakeTelegram
) -> None:
    """A SIGTERM drains: running turns finish, new messages are not taken.  One that
    arrives meanwhile must not be confirmed to Telegram (the next getUpdates offset), or it
    would be lost; the next start fetches it."""
    start(daemon, fake, agents=three_agents(a_delay=2.0))
    fake.topic_message(FORUM, 10, ALICE, "slow one", mention=True)
    wait_for(lambda: daemon.agents()["a"]["queue"] == 1, what="the slow turn running")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "daemon_stopping" in daemon.log(), what="draining")
    fake.topic_message(FORUM, 11, BOB, "sent while draining", mention=True)
    assert daemon.process.wait(timeout=15) == 0
    assert ["slow one" in text for text in texts(fake, FORUM)] == [True]  # drained, not the new one
    daemon.start()
    wait_for(lambda: any("sent while draining" in t for t in texts(fake, FORUM)), timeout=20,
             what="the message sent while draining answered after the restart")


def test_reply_cut_short_by_a_crash_goes_on_from_its_next_part(daemon: Daemon, fake: FakeTelegram) -> None:
    """A reply in three parts: the first is out, the second waits out a long 429 when
    hermesd is killed.  After the restart the user has each part once, in order."""
    words = [f"w{i}" for i in range(2000)]  # "a: w0 w1 ...": 10,892 characters
    start(daemon, fake)
    fake.fail("sendMessage", {"error_code": 429, "retry_after": 60}, after=1)
    fake.private_message(ALICE, " ".join(words))
    wait_for(lambda: any(c["status"] == 429 for c in fake.calls("sendMessage")), what="the second part held")
    daemon.kill()
    daemon.start()
    wait_for(lambda: texts(fake, ALICE)[-1].endswith("w1999"), timeout=20, what="the last part")
    time.sleep(1.5)  # a part sent twice would show up by now
    parts = texts(fake, ALICE)
    assert len(parts) == 3 and " ".join(parts).split() == ["a:", *words]
    assert "reply_resumed" in daemon.log() and "from_part=2" in daemon.log()


def test_a_429_on_typing_holds_the_chat_and_no_more_typing_is_sent(daemon: Daemon, fake: FakeTelegram) -> None:
    """Typing… goes outside the flood gate, but a 429 it gets is obeyed: the reply waits it
    out, and no typing is sent into it."""
    start(daemon, fake, agents=three_agents(a_delay=2.5))
    fake.fail("sendChatAction", {"error_code": 429, "retry_after": 3})
    fake.topic_message(FORUM, 10, ALICE, "think first", mention=True)
    wait_for(lambda: texts(fake, FORUM), what="answer")
    (typing,) = fake.calls("sendChatAction")  # the one that got the 429; none after it
    (reply,) = fake.sent("sendMessage")
    assert reply["time"] - typing["time"] >= 3.0
