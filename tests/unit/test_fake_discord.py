"""The fake Discord server answers a real discord.py Client like Discord does, so adapter tests can trust it."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord
import pytest
import yarl

from tests.fakes.discord_server import FakeDiscord

SCRIPT = Path(__file__).resolve().parents[1] / "fakes" / "discord_server.py"
GUILD, CHANNEL, THREAD, ROLE, ALICE, BOB = 500, 501, 502, 503, 42, 43


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # discord.py is asyncio-only


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    """A fake with one guild, and discord.py pointed at it (both patches undone after the test)."""
    with FakeDiscord() as server:
        server.add_guild(GUILD, "Test Guild", channels=[(CHANNEL, "general")], threads=[(THREAD, CHANNEL, "topic")],
                         members=[ALICE, BOB], roles={ROLE: [ALICE]})
        monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
        # discord.py >= 2.4 connects here instead of asking /gateway/bot, so it must be patched too
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
        yield server


class Bot(discord.Client):
    """Collects what users say (not its own echoes) and counts resumes."""

    def __init__(self, intents: discord.Intents) -> None:
        super().__init__(intents=intents, guild_ready_timeout=0.1)  # ready 0.1 s after the last GUILD_CREATE
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.ready, self.resumed, self.resumes = asyncio.Event(), asyncio.Event(), 0

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_resumed(self) -> None:
        self.resumes += 1
        self.resumed.set()

    async def on_message(self, message: discord.Message) -> None:
        if self.user is not None and message.author.id != self.user.id:
            await self.inbox.put(message)

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.inbox.get(), 5)


def intents(content: bool = True) -> discord.Intents:
    return discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=content)


@asynccontextmanager
async def running(fake: FakeDiscord, flags: discord.Intents | None = None) -> AsyncIterator[Bot]:
    bot = Bot(flags or intents())
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(bot.ready.wait(), 5)
        yield bot
    finally:
        await bot.close()
        await task


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    async with running(fake) as client:
        yield client


@pytest.mark.anyio
async def test_ready_sees_guild_channel_thread(fake: FakeDiscord, bot: Bot) -> None:
    assert bot.user is not None and (bot.user.id, bot.user.name) == (fake.bot_id, "fakebot")
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.name == "Test Guild"
    assert isinstance(channel := guild.get_channel(CHANNEL), discord.TextChannel) and channel.name == "general"
    assert isinstance(thread := guild.get_thread(THREAD), discord.Thread) and thread.parent_id == CHANNEL
    assert guild.me.id == fake.bot_id and guild.get_role(ROLE) is not None
    assert await asyncio.to_thread(fake.wait_identified, 1) and (fake.identified, fake.resumed) == (1, 0)
    paths = [c["path"] for c in fake.calls()]
    assert paths[:3] == ["/api/v10/users/@me", "/api/v10/oauth2/applications/@me", "/gateway"]
    assert fake.calls()[2]["query"]["compress"] in ("zlib-stream", "zstd-stream")  # asked for; text answered


@pytest.mark.anyio
async def test_channel_messages_reach_on_message(fake: FakeDiscord, bot: Bot) -> None:
    fake.channel_message(GUILD, CHANNEL, ALICE, "hello", mention_bot=True)
    message = await bot.next_message()
    assert (message.guild and message.guild.id, message.channel.id, message.author.id) == (GUILD, CHANNEL, ALICE)
    assert isinstance(message.channel, discord.TextChannel) and isinstance(message.author, discord.Member)
    assert [m.id for m in message.mentions] == [fake.bot_id] and message.content == f"<@{fake.bot_id}> hello"
    assert [r.id for r in message.author.roles if not r.is_default()] == [ROLE]
    fake.channel_message(GUILD, CHANNEL, BOB, "no ping")
    plain = await bot.next_message()
    assert plain.mentions == [] and plain.reference is None and plain.content == "no ping"

    mine = await message.channel.send("an answer")
    fake.channel_message(GUILD, CHANNEL, BOB, "replying", reply_to_bot=True)
    reply = await bot.next_message()
    assert reply.reference is not None and reply.reference.message_id == mine.id
    assert isinstance(reply.reference.resolved, discord.Message) and reply.reference.resolved.author.id == fake.bot_id
    assert reply.mentions == []  # a reply alone does not ping: the adapter must look at the reference


@pytest.mark.anyio
async def test_thread_message_has_thread_channel(fake: FakeDiscord, bot: Bot) -> None:
    fake.thread_message(GUILD, THREAD, ALICE, "in a thread")
    message = await bot.next_message()
    assert isinstance(message.channel, discord.Thread) and message.channel.parent_id == CHANNEL
    assert message.channel.id == THREAD and message.guild is not None and message.guild.id == GUILD


@pytest.mark.anyio
async def test_send_file_typing_and_echo(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    async with channel.typing():
        sent = await channel.send("x")
    await channel.send("with file", file=discord.File(io.BytesIO(b"report"), "r.txt"))
    assert [(s["channel_id"], s["content"]) for s in fake.sent()] == [(CHANNEL, "x"), (CHANNEL, "with file")]
    assert fake.sent()[0]["message_id"] == sent.id and fake.sent()[1]["files"] == [("r.txt", b"report")]
    assert any(c["path"].endswith(f"/channels/{CHANNEL}/typing") and c["status"] == 204 for c in fake.calls())
    assert bot.inbox.empty() and bot.get_partial_messageable(CHANNEL).id == CHANNEL
    with pytest.raises(discord.HTTPException) as empty:  # Discord refuses what it would refuse
        await channel.send("")
    assert empty.value.code == 50006


@pytest.mark.anyio
async def test_rate_limit_is_retried(fake: FakeDiscord, bot: Bot) -> None:
    fake.fail("POST", r"/channels/\d+/messages$", retry_after=0.2)
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    start = time.monotonic()
    await channel.send("after a wait")
    assert time.monotonic() - start >= 0.2
    posts = [c for c in fake.calls() if c["method"] == "POST"]
    assert [c["status"] for c in posts] == [429, 200] and [s["content"] for s in fake.sent()] == ["after a wait"]
    fake.fail("*", r"/typing$", status=403)
    with pytest.raises(discord.Forbidden):
        await channel.typing()
    fake.reset()
    assert fake.calls() == [] and fake.sent() == []
    await channel.typing()  # the scripted failure was used up, and reset() would have dropped it anyway
    stranger = discord.Client(intents=intents())
    with pytest.raises(discord.LoginFailure):  # a wrong token is refused like on Discord
        await stranger.login("not-the-token")
    await stranger.close()


@pytest.mark.anyio
async def test_dm_and_attachments(fake: FakeDiscord, bot: Bot) -> None:
    fake.dm(ALICE, "psst", attachments=[("notes.txt", b"secret notes")])
    message = await bot.next_message()
    assert isinstance(message.channel, discord.DMChannel) and message.guild is None
    assert message.author.id == ALICE and message.content == "psst"
    assert await message.attachments[0].read() == b"secret notes" and message.attachments[0].filename == "notes.txt"
    await message.channel.send("got it")
    opened = await bot.create_dm(discord.Object(ALICE))  # POST /users/@me/channels: the same DM channel
    assert opened.id == message.channel.id and fake.sent()[0]["channel_id"] == message.channel.id


@pytest.mark.anyio
async def test_created_thread_is_known(fake: FakeDiscord, bot: Bot) -> None:
    fake.channel_message(GUILD, CHANNEL, ALICE, "start here", mention_bot=True)
    message = await bot.next_message()
    thread = await message.create_thread(name="session")
    assert thread.id == message.id and thread.parent_id == CHANNEL
    fake.thread_message(GUILD, thread.id, ALICE, "inside")
    inside = await bot.next_message()
    assert isinstance(inside.channel, discord.Thread) and inside.channel.id == thread.id
    with pytest.raises(discord.HTTPException) as again:  # one thread per message, as on Discord
        await message.create_thread(name="twice")
    assert again.value.code == 160004
    with pytest.raises(discord.NotFound):  # unknown routes are 404s, recorded for the test author
        await bot.fetch_guild(GUILD)
    assert fake.calls()[-1]["path"] == f"/api/v10/guilds/{GUILD}" and fake.calls()[-1]["status"] == 404


@pytest.mark.anyio
@pytest.mark.parametrize("code", [4000, None])
async def test_disconnect_resumes_and_replays(fake: FakeDiscord, bot: Bot, code: int | None) -> None:
    fake.disconnect(code)
    fake.channel_message(GUILD, CHANNEL, ALICE, "while you were away")  # buffered: socket already dropped
    message = await bot.next_message()
    assert message.content == "while you were away" and message.channel.id == CHANNEL
    await asyncio.wait_for(bot.resumed.wait(), 5)  # RESUMED comes after the replay
    assert await asyncio.to_thread(fake.wait_resumed, 5)
    assert (fake.resumed, fake.identified, bot.resumes) == (1, 1, 1)


@pytest.mark.anyio
async def test_history_holds_messages_never_dispatched(fake: FakeDiscord, bot: Bot) -> None:
    first = fake.channel_message(GUILD, CHANNEL, ALICE, "seen live")
    assert (await bot.next_message()).content == "seen live"
    for i in range(120):  # more than one page of 100
        fake.channel_message(GUILD, CHANNEL, BOB, f"offline {i}", live=False)
    old = fake.channel_message(GUILD, CHANNEL, BOB, "from last week", live=False, age=7 * 86400)
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    after = [m.content async for m in channel.history(after=discord.Object(int(first["id"])), oldest_first=True,
                                                      limit=None)]
    assert after == [f"offline {i}" for i in range(120)]
    newest = [m.content async for m in channel.history(limit=3)]
    assert newest == ["offline 119", "offline 118", "offline 117"]
    oldest = [m async for m in channel.history(limit=1, oldest_first=True)][0]
    assert oldest.id == int(old["id"]) and oldest.created_at.timestamp() < time.time() - 6 * 86400
    assert bot.inbox.empty()  # none of it came over the gateway
    assert any(c["query"].get("after") for c in fake.calls() if c["path"].endswith(f"/channels/{CHANNEL}/messages"))


@pytest.mark.anyio
async def test_without_message_content_only_mentions_have_text(fake: FakeDiscord) -> None:
    async with running(fake, intents(content=False)) as bot:
        fake.channel_message(GUILD, CHANNEL, ALICE, "hidden")
        fake.channel_message(GUILD, CHANNEL, ALICE, "shown", mention_bot=True)
        assert (await bot.next_message()).content == ""
        assert (await bot.next_message()).content == f"<@{fake.bot_id}> shown"


@pytest.mark.anyio
async def test_messages_before_identify_are_held(fake: FakeDiscord) -> None:
    fake.channel_message(GUILD, CHANNEL, ALICE, "early")
    async with running(fake) as bot:
        assert (await bot.next_message()).content == "early"
    # discord.py's close() sends 4000, not 1000, so Discord (and the fake) keep that session resumable: a
    # restarted adapter IDENTIFYs afresh and only gets what is said after that, so wait for it first.
    async with running(fake) as bot:
        assert fake.identified == 2 and len(fake.sessions) == 2
        fake.dm(BOB, "after the restart")
        assert (await bot.next_message()).content == "after the restart"


def test_runs_as_a_script_with_admin_endpoints() -> None:
    process = subprocess.Popen([sys.executable, str(SCRIPT)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base = line.removeprefix("listening on ")
        request = urllib.request.Request(f"{base}/_admin/add_guild", data=json.dumps(
            {"guild_id": 7, "channels": [[8, "general"]]}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["channels"][0]["name"] == "general"
        request = urllib.request.Request(f"{base}/api/v10/gateway/bot", headers={
            "Authorization": "Bot fake-discord-token"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["url"] == base.replace("http", "ws") + "/gateway"
    finally:
        process.terminate()
        assert process.wait(5) == 0
