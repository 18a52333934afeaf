"""A reload restarts the platforms whose [platforms.*] table changed, and only those: the
real daemon, python-telegram-bot and discord.py inside it, fake servers on 127.0.0.1."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.harness import HERMESCTL, Daemon, three_agents, wait_for

ALICE, STRANGER = 42, 99
NEW_BOT = "555000:another-fake-token"
REFUSAL = "Sorry, this bot only talks to people it was set up for."


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=(TOKEN, NEW_BOT)) as server:
        yield server


def telegram_table(daemon: Daemon, fake: FakeTelegram, allowed: str = f"[{ALICE}]") -> str:
    token_file = daemon.root / "telegram.token"
    token_file.write_text(fake.token + "\n")
    return f"""
        [platforms.telegram]
        token_file = "{token_file}"
        api_base = "{fake.url}"
        allowed_users = {allowed}
        """


def configure(daemon: Daemon, platforms: str, a_delay: float = 0.0) -> None:
    daemon.write_config(three_agents(a_delay), extra=platforms, daemon='default_agent = "a"\n')


def start_with_telegram(daemon: Daemon, fake: FakeTelegram, platforms: str = "", a_delay: float = 0.0) -> None:
    configure(daemon, telegram_table(daemon, fake) + platforms, a_delay)
    daemon.start()
    wait_for(lambda: fake.calls("setMyCommands"), what="bot connected")


def reload(daemon: Daemon) -> str:
    result = daemon.ctl("reload", "--wait")
    assert result.returncode == 0, result.stderr
    return result.stdout


def texts(fake: FakeTelegram, chat: int) -> list[str]:
    return [c["params"]["text"] for c in fake.sent("sendMessage") if str(c["params"]["chat_id"]) == str(chat)]


def platforms(daemon: Daemon) -> dict[str, dict[str, object]]:
    status = daemon.status()
    assert status is not None
    return status["platforms"]


def test_user_added_to_telegram_allowed_users_is_answered_after_reload(
    daemon: Daemon, telegram: FakeTelegram
) -> None:
    start_with_telegram(daemon, telegram)
    telegram.private_message(STRANGER, "let me in")
    wait_for(lambda: texts(telegram, STRANGER), what="refusal")
    configure(daemon, telegram_table(daemon, telegram, allowed=f"[{ALICE}, {STRANGER}]"))
    assert "platforms restarted: telegram" in reload(daemon)
    telegram.private_message(STRANGER, "now?")
    wait_for(lambda: len(texts(telegram, STRANGER)) == 2, what="answer after the reload")
    assert texts(telegram, STRANGER) == [REFUSAL, "a: now?"]  # the refused message is not taken again
    offsets = [c["params"].get("offset") or 0 for c in telegram.calls("getUpdates")]
    assert offsets == sorted(offsets)  # the offset never went back
    assert "platform_restarted name=telegram reason=\"settings changed\"" in daemon.log()
    assert telegram.token not in daemon.log()


def test_token_replaced_in_its_file_is_used_after_reload(daemon: Daemon, telegram: FakeTelegram) -> None:
    start_with_telegram(daemon, telegram)
    telegram.private_message(ALICE, "old bot here")  # update 1 of the old bot
    wait_for(lambda: texts(telegram, ALICE), what="answer from the old bot")
    (daemon.root / "telegram.token").write_text(NEW_BOT + "\n")
    assert "platforms restarted: telegram" in reload(daemon)
    telegram.private_message(ALICE, "new bot here", token=NEW_BOT)  # update 1 of the new bot
    wait_for(lambda: len(texts(telegram, ALICE)) == 2, what="answer from the new bot")
    assert [(c["token"], c["params"]["text"]) for c in telegram.sent("sendMessage")] == [
        (TOKEN, "a: old bot here"), (NEW_BOT, "a: new bot here")]
    assert 'platform_restarted name=telegram reason="token changed"' in daemon.log()
    assert TOKEN not in daemon.log() and NEW_BOT not in daemon.log()


def test_reload_changing_only_local_leaves_the_telegram_connection_alone(
    daemon: Daemon, telegram: FakeTelegram
) -> None:
    start_with_telegram(daemon, telegram)
    connects = len(telegram.calls("getMe"))
    moved = daemon.root / "other.sock"
    configure(daemon, telegram_table(daemon, telegram) + f'[platforms.local]\nsocket = "{moved}"\n')
    out = reload(daemon)
    assert "platforms restarted: local" in out and "telegram" not in out
    assert moved.exists() and not (daemon.runtime_dir / "local.sock").exists()
    result = daemon.ctl("--local-socket", str(moved), "send", "local:x", "moved")
    assert result.stdout == "a: moved\n", result.stderr
    telegram.private_message(ALICE, "still polling?")
    wait_for(lambda: texts(telegram, ALICE), what="telegram answer")
    assert len(telegram.calls("getMe")) == connects  # same bot, same long poll: no reconnect
    assert "platform_restarted name=telegram" not in daemon.log()


def test_local_chat_stays_connected_across_a_reload_that_adds_telegram(
    daemon: Daemon, telegram: FakeTelegram
) -> None:
    configure(daemon, "")
    daemon.start()
    chat = subprocess.Popen([HERMESCTL, "--socket", str(daemon.socket), "chat", "b"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert say(chat, "before") == "b: before"
        configure(daemon, telegram_table(daemon, telegram))
        assert "platforms restarted: telegram" in reload(daemon)
        wait_for(lambda: telegram.calls("setMyCommands"), what="telegram started by the reload")
        assert say(chat, "after") == "b: after"  # the same connection
    finally:
        chat.kill()
        chat.wait()
    telegram.private_message(ALICE, "hello new bot")
    wait_for(lambda: texts(telegram, ALICE), what="telegram answer")
    assert "platform_started name=telegram" in daemon.log()


def say(chat: subprocess.Popen[str], line: str) -> str:
    """Send one line to `hermesctl chat` and read the answer (10 s at most)."""
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(line + "\n")
    chat.stdin.flush()
    ready, _, _ = select.select([chat.stdout], [], [], 10)
    assert ready, "no answer from hermesctl chat"
    return chat.stdout.readline().rstrip("\n")


def test_reload_removing_telegram_stops_its_polling(daemon: Daemon, telegram: FakeTelegram) -> None:
    start_with_telegram(daemon, telegram)
    configure(daemon, "")
    assert "platforms restarted: telegram" in reload(daemon)
    assert "telegram" not in platforms(daemon)
    polls = len(telegram.calls("getUpdates"))
    telegram.private_message(ALICE, "anyone?")
    assert daemon.send("local:x", "local still works") == "a: local still works\n"
    time.sleep(0.5)  # a poller still running would have fetched it by now
    assert len(telegram.calls("getUpdates")) == polls and not texts(telegram, ALICE)
    assert "platform_stopped name=telegram" in daemon.log()


def test_replies_and_messages_during_a_telegram_restart_arrive_once(
    daemon: Daemon, telegram: FakeTelegram
) -> None:
    start_with_telegram(daemon, telegram)
    telegram.fail("sendMessage", {"error_code": 429, "retry_after": 5})  # longer than stop_timeout (3 s)
    telegram.private_message(ALICE, "before")
    wait_for(lambda: telegram.calls("sendMessage"), what="first reply held back by Telegram")
    configure(daemon, telegram_table(daemon, telegram, allowed=f"[{ALICE}, {STRANGER}]"))
    result = daemon.ctl("reload")  # returns at once: the restart waits for the reply in flight
    assert result.returncode == 0, result.stderr
    telegram.private_message(ALICE, "during")
    wait_for(lambda: "platform_restarted name=telegram" in daemon.log(), what="restart done")
    telegram.private_message(ALICE, "after")
    wait_for(lambda: len(texts(telegram, ALICE)) >= 3, timeout=20, what="three answers")
    time.sleep(1.5)  # a duplicate would show up by now (one message per second to a chat)
    assert sorted(texts(telegram, ALICE)) == ["a: after", "a: before", "a: during"]


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server


def discord_table(daemon: Daemon, fake: FakeDiscord) -> str:
    token_file = daemon.root / "discord.token"
    token_file.write_text(fake.token)
    return f"""
        [platforms.discord]
        token_file = "{token_file}"
        api_base = "{fake.api_base}"
        gateway_url = "{fake.gateway_url}"
        allowed_users = [{ALICE}]
        """


def discord_ready(daemon: Daemon) -> bool:
    return platforms(daemon).get("discord", {}).get("state") == "ready"


def test_reload_adding_discord_connects_it(daemon: Daemon, discord: FakeDiscord) -> None:
    configure(daemon, "")
    daemon.start()
    configure(daemon, discord_table(daemon, discord))
    assert "platforms restarted: discord" in reload(daemon)
    wait_for(lambda: discord_ready(daemon), timeout=15, what="discord ready")
    discord.dm(ALICE, "hello")
    wait_for(lambda: [s["content"] for s in discord.sent()] == ["a: hello"], what="DM answer")
    assert "platform_started name=discord" in daemon.log()


def test_reload_removing_discord_closes_its_gateway_connection(daemon: Daemon, discord: FakeDiscord) -> None:
    configure(daemon, discord_table(daemon, discord))
    daemon.start()
    wait_for(lambda: discord_ready(daemon), timeout=15, what="discord ready")
    configure(daemon, "")
    assert "platforms restarted: discord" in reload(daemon)
    assert "discord" not in platforms(daemon)

    def closed() -> bool:
        with discord.cond:
            return all(session.ws is None for session in discord.sessions.values())

    wait_for(closed, what="gateway socket closed")
    assert daemon.send("local:x", "local still works") == "a: local still works\n"


def test_reply_cut_short_by_a_telegram_restart_goes_on_from_its_next_part(
    daemon: Daemon, telegram: FakeTelegram
) -> None:
    """The restart cancels a reply whose second part waits out a 429 longer than the
    restart's grace (stop_timeout); the new bot sends the parts the old one had not."""
    words = [f"w{i}" for i in range(1000)]  # "a: w0 w1 ...": 4,892 characters, two parts
    start_with_telegram(daemon, telegram)
    telegram.fail("sendMessage", {"error_code": 429, "retry_after": 60}, after=1)
    telegram.private_message(ALICE, " ".join(words))
    wait_for(lambda: any(c["status"] == 429 for c in telegram.calls("sendMessage")), what="the second part held")
    configure(daemon, telegram_table(daemon, telegram, allowed=f"[{ALICE}, {STRANGER}]"))
    reload(daemon)
    wait_for(lambda: texts(telegram, ALICE)[-1].endswith("w999"), timeout=20, what="the last part")
    time.sleep(1.5)  # a part sent twice would show up by now
    parts = texts(telegram, ALICE)
    assert len(parts) == 2 and " ".join(parts).split() == ["a:", *words]
