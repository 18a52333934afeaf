"""What was said on Discord while hermesd was not connected: read back from the channels'
history after it connects, through the same filters and dedup as a live message."""

from __future__ import annotations

import re
import time

from tests.fakes.discord_server import FakeDiscord
from tests.harness import Daemon, wait_for
from tests.integration.test_discord import (
    ALICE,
    BOB,
    GENERAL,
    GUILD,
    HELP,
    STRANGER,
    fake,
    replies,
    start,
)

__all__ = ["fake"]  # the fixture, shared with test_discord

DAY = 24 * 3600.0
QUIET_GUILD, QUIET = 20, 301  # a channel no route names


def restart(daemon: Daemon, fake: FakeDiscord) -> None:
    """Start the stopped daemon again, with the config it had, and wait until it is connected."""
    identified = fake.identified
    daemon.start()
    fake.wait_identified(timeout=15, count=identified + 1)
    wait_for(lambda: daemon.status()["platforms"]["discord"]["state"] == "ready", timeout=15,
             what="discord ready again")


def answer_then_stop(daemon: Daemon, fake: FakeDiscord) -> None:
    """hermesd answers a message in GENERAL (so it follows that channel from then on) and stops."""
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "known", mention_bot=True)
    wait_for(lambda: replies(fake, GENERAL), what="answer in the known channel")
    daemon.stop()


def caught_up(daemon: Daemon, channel: int) -> list[int]:
    """The counts logged by `discord_caught_up` for one channel, in order."""
    return [int(n) for n in re.findall(rf"discord_caught_up channel={channel} count=(\d+)", daemon.log())]


def history_reads(fake: FakeDiscord, channel: int) -> int:
    return sum(c["method"] == "GET" and c["path"].endswith(f"/channels/{channel}/messages") for c in fake.calls())


def test_messages_sent_while_stopped_are_answered_in_order_after_start(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "before", mention_bot=True)
    fake.dm(BOB, "hello")
    wait_for(lambda: replies(fake, GENERAL) and any(s["content"] == "a: hello" for s in fake.sent()),
             what="answers before the stop")
    daemon.stop()
    for i in range(3):
        fake.channel_message(GUILD, GENERAL, ALICE, f"while down {i}", mention_bot=True, live=False)
        fake.channel_message(GUILD, GENERAL, STRANGER, "let me in", mention_bot=True, live=False)  # filtered
    dm_channel = fake.dm(BOB, "are you there?", live=False)["channel_id"]
    restart(daemon, fake)
    wait_for(lambda: len(replies(fake, GENERAL)) == 4 and len(replies(fake, int(dm_channel))) == 2,
             timeout=20, what="answers after the start")
    time.sleep(0.5)  # a repeat would show by now
    assert replies(fake, GENERAL) == ["a: before"] + [f"a: while down {i}" for i in range(3)]
    assert replies(fake, int(dm_channel)) == ["a: hello", "a: are you there?"]
    assert caught_up(daemon, GENERAL) == [3] and caught_up(daemon, int(dm_channel)) == [1]


def test_message_replayed_by_a_resume_and_in_history_is_answered_once(daemon: Daemon, fake: FakeDiscord) -> None:
    start(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "first", mention_bot=True)
    wait_for(lambda: replies(fake, GENERAL), what="first answer")
    fake.disconnect()
    fake.channel_message(GUILD, GENERAL, ALICE, "during the gap", mention_bot=True)  # replayed and in history
    fake.wait_resumed(timeout=20)
    wait_for(lambda: len(replies(fake, GENERAL)) == 2, timeout=20, what="answer after the resume")
    wait_for(lambda: caught_up(daemon, GENERAL), what="catch-up logged")
    time.sleep(0.5)
    assert replies(fake, GENERAL) == ["a: first", "a: during the gap"]
    assert caught_up(daemon, GENERAL) == [1]  # taken from history; the replayed copy was a repeat


def test_channel_never_spoken_in_is_not_read_back(daemon: Daemon, fake: FakeDiscord) -> None:
    answer_then_stop(daemon, fake)
    fake.channel_message(GUILD, HELP, ALICE, "said in a new channel while down", mention_bot=True, live=False)
    fake.channel_message(GUILD, GENERAL, ALICE, "said in the known one", mention_bot=True, live=False)
    restart(daemon, fake)
    wait_for(lambda: len(replies(fake, GENERAL)) == 2, timeout=20, what="catch-up in the known channel")
    time.sleep(0.5)
    assert replies(fake, HELP) == [] and history_reads(fake, HELP) == 0


def test_only_the_newest_fifty_messages_of_a_channel_are_read_back(daemon: Daemon, fake: FakeDiscord) -> None:
    answer_then_stop(daemon, fake)
    fake.channel_message(GUILD, GENERAL, ALICE, "too far back", mention_bot=True, live=False)
    for i in range(50):
        fake.channel_message(GUILD, GENERAL, BOB, f"chatter {i}", live=False)  # no mention: not for the bot
    fake.channel_message(GUILD, GENERAL, ALICE, "latest", mention_bot=True, live=False)
    restart(daemon, fake)
    wait_for(lambda: len(replies(fake, GENERAL)) == 2, timeout=20, what="the newest answered")
    wait_for(lambda: "discord_catch_up_cut" in daemon.log(), what="the cut logged")
    time.sleep(0.5)
    assert replies(fake, GENERAL) == ["a: known", "a: latest"]
    assert caught_up(daemon, GENERAL) == [1]
    assert re.search(rf"discord_catch_up_cut channel={GENERAL} older_than_max_age=0 over_max_messages=True",
                     daemon.log())


def test_messages_older_than_a_day_are_not_read_back(daemon: Daemon, fake: FakeDiscord) -> None:
    # QUIET has no route and there is no default agent yet: its message is stored and dropped,
    # so no answer moves the channel's read position past that old message.
    fake.add_guild(QUIET_GUILD, channels=[(QUIET, "quiet")], members=[ALICE])
    start(daemon, fake, default_agent="")
    fake.channel_message(QUIET_GUILD, QUIET, ALICE, "two days ago", mention_bot=True, age=2 * DAY)
    wait_for(lambda: "message_dropped" in daemon.log(), what="the old message taken")
    daemon.stop()
    start_config = daemon.config_path.read_text()
    daemon.config_path.write_text(start_config.replace("[daemon]\n", '[daemon]\ndefault_agent = "b"\n', 1))
    fake.channel_message(QUIET_GUILD, QUIET, ALICE, "yesterday morning", mention_bot=True, live=False,
                         age=DAY + 3600)
    fake.channel_message(QUIET_GUILD, QUIET, ALICE, "just now", mention_bot=True, live=False)
    restart(daemon, fake)
    wait_for(lambda: replies(fake, QUIET), timeout=20, what="the recent one answered")
    wait_for(lambda: "discord_catch_up_cut" in daemon.log(), what="the cut logged")
    time.sleep(0.5)
    assert replies(fake, QUIET) == ["b: just now"]
    assert re.search(rf"discord_catch_up_cut channel={QUIET} older_than_max_age=1 over_max_messages=False",
                     daemon.log())
