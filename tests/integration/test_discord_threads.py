"""Discord's `reply_in_thread`: a mention in a guild channel is answered in a new thread
started from it, and the conversation goes on there."""

from __future__ import annotations

import time

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon, three_agents, wait_for
from tests.integration.test_discord import (
    ALICE,
    GENERAL,
    GUILD,
    HELP,
    fake,
    replies,
    start,
)

__all__ = ["fake"]  # the fixture, shared with test_discord

QUESTION = "how do I rotate the signing keys of the staging cluster without downtime?"
THREAD_NAME = "how do I rotate the signing keys of the staging cl…"  # its first 50 characters


def threads_started(fake: FakeDiscord) -> list[dict]:
    """The thread-from-message calls Discord accepted: (message id, name)."""
    return [{"message": int(c["path"].split("/")[-2]), "name": c["json"]["name"]} for c in fake.calls()
            if c["method"] == "POST" and c["path"].endswith("/threads") and c["status"] == 201]


def test_mention_is_answered_in_a_new_thread_named_after_it(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake, platform="reply_in_thread = true")
    asked = int(fake.channel_message(GUILD, GENERAL, ALICE, QUESTION, mention_bot=True)["id"])
    wait_for(lambda: replies(fake, asked), what="answer in the thread")
    assert replies(fake, asked) == [f"a: {QUESTION}"]
    assert threads_started(fake) == [{"message": asked, "name": THREAD_NAME}]
    assert replies(fake, GENERAL) == []


def test_follow_up_in_the_thread_continues_the_conversation(daemon: Daemon, fake: FakeDiscord) -> None:
    with FakeOpenAI() as llm:
        start(daemon, fake, platform="reply_in_thread = true", agents=three_agents(a_llm=llm.url))
        thread = int(fake.channel_message(GUILD, GENERAL, ALICE, "the first question", mention_bot=True)["id"])
        wait_for(lambda: replies(fake, thread), timeout=15, what="first answer")
        fake.thread_message(GUILD, thread, ALICE, "and a follow-up")  # no mention needed in the bot's thread
        wait_for(lambda: len(replies(fake, thread)) == 2, timeout=15, what="second answer")
        history = [m.get("content") for m in llm.requests("m")[-1]["body"]["messages"]]
    assert replies(fake, thread) == ["fake: the first question", "fake: and a follow-up"]
    assert "the first question" in history and "fake: the first question" in history
    assert len(threads_started(fake)) == 1


def test_a_route_turns_it_on_for_its_channel_only(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake, help_route="reply_in_thread = true")
    fake.channel_message(GUILD, GENERAL, ALICE, "in general", mention_bot=True)
    asked = int(fake.channel_message(GUILD, HELP, ALICE, "in help", mention_bot=True)["id"])
    wait_for(lambda: replies(fake, GENERAL) and replies(fake, asked), what="two answers")
    assert replies(fake, GENERAL) == ["a: in general"]
    assert replies(fake, asked) == ["b: in help"]  # the thread goes to its parent channel's agent
    assert replies(fake, HELP) == []
    assert threads_started(fake) == [{"message": asked, "name": "in help"}]


def test_without_it_the_channel_is_answered_and_no_thread_started(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "plain", mention_bot=True)
    wait_for(lambda: replies(fake, GENERAL), what="answer in the channel")
    time.sleep(0.3)
    assert replies(fake, GENERAL) == ["a: plain"]
    assert threads_started(fake) == []


def test_thread_someone_started_meanwhile_is_answered_in(daemon: Daemon, fake: FakeDiscord) -> None:
    """A thread from that message exists, but its THREAD_CREATE has not reached hermesd:
    Discord refuses a second one (160004), and the answer goes into the one there is."""
    start(daemon, fake, platform="reply_in_thread = true", agents=three_agents(a_delay=0.5))
    asked = int(fake.channel_message(GUILD, GENERAL, ALICE, "quick one", mention_bot=True)["id"])
    fake.start_thread(GENERAL, asked, "started by hand", dispatch=False)
    wait_for(lambda: replies(fake, asked), what="answer in the existing thread")
    assert replies(fake, asked) == ["a: quick one"]
    assert any(c["status"] == 400 and c["path"].endswith(f"/messages/{asked}/threads") for c in fake.calls())
