"""Discord: one gateway connection for every agent.

discord.py's `Client` owns the connection (identify, heartbeats, resume and reconnect);
this adapter turns its messages into spooled ones and sends replies back in the same
channel, thread or DM, or in a thread started from the message (`discord_threads`).  Message ids make a message replayed after a resume harmless; what
was said while no session was up is read back from history (`discord_catchup`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import discord
import yarl
from anyio.abc import TaskGroup, TaskStatus

from hermesd import attachments, log
from hermesd.config import ConfigError, DiscordConfig
from hermesd.platforms import Directory, Inbox, Sending, Skip, permitted
from hermesd.platforms.discord_catchup import CatchUp
from hermesd.platforms.discord_threads import ThreadStarter, thread_key
from hermesd.platforms.formatting import split, utf16_len
from hermesd.platforms.typing_indicator import TypingIndicator
from hermesd.spool import Incoming, SpoolUnavailable

NAME = "discord"
MAX_CHARS = 2000
MAX_DOWNLOAD = 25 * 1024 * 1024
UNAVAILABLE = "Sorry, I cannot take messages right now. Please send that again in a while."
KEY = re.compile(r"discord:(?:dm:[0-9]+|channel:[0-9]+:[0-9]+(?::[0-9]+)?|thread:[0-9]+:[0-9]+:[0-9]+)")
"""DESIGN §4's grammar of Discord session keys (snowflakes are never negative)."""


def guild_id(message: discord.Message) -> int | None:
    """The guild a message was posted in, None in a DM.  discord.py leaves `guild` None for a
    guild it has not cached (yet), but the channel still knows the guild's id."""
    return message.guild.id if message.guild else getattr(message.channel, "guild_id", None)


def session_key(message: discord.Message, channel_sessions: str) -> str:
    """DESIGN §4; a thread's key names its parent channel, so routing can fall back to it."""
    author, guild = message.author.id, guild_id(message)
    if guild is None:
        return f"discord:dm:{author}"
    channel = message.channel
    if isinstance(channel, discord.Thread):
        return f"discord:thread:{guild}:{channel.parent_id}:{channel.id}"
    base = f"discord:channel:{guild}:{channel.id}"
    return base if channel_sessions == "shared" else f"{base}:{author}"


class Parsed(NamedTuple):
    """A message that may go to an agent (the route decides on mentions and who may talk)."""

    session_key: str
    sender: int
    text: str
    in_guild: bool
    addressed: bool  # mentions the bot or replies to it


def parse_message(message: discord.Message, settings: DiscordConfig, bot_id: int) -> Parsed | Skip:
    """What `on_message` acts on, or why not.  discord.py leaves out the attributes whose
    keys a payload lacks, so these are looked up with care.  Pure, so it can be tested on
    messages built from raw payloads."""
    author = getattr(message, "author", None)
    if author is None or not isinstance(author.id, int):
        return Skip("malformed: no author", malformed=True)
    if author.bot:
        return Skip("from a bot")
    guild = guild_id(message)
    if guild is not None and settings.allowed_guilds and guild not in settings.allowed_guilds:
        return Skip("guild not allowed")
    content = getattr(message, "content", None)
    content = content if isinstance(content, str) else ""
    text = content.replace(f"<@{bot_id}>", "").replace(f"<@!{bot_id}>", "").strip()
    key = session_key(message, settings.channel_sessions)
    if not KEY.fullmatch(key):
        return Skip(f"malformed: session key {key!r}", malformed=True)
    return Parsed(key, author.id, text, guild is not None, _addressed(message, bot_id))


def _addressed(message: discord.Message, bot_id: int) -> bool:
    """A mention, a reply to the bot, or anything said in a thread the bot started (one
    `reply_in_thread` made): that thread is a conversation with the bot."""
    if isinstance(message.channel, discord.Thread) and message.channel.owner_id == bot_id:
        return True
    if any(user.id == bot_id for user in getattr(message, "mentions", ())):
        return True
    reference = getattr(message, "reference", None)
    resolved = reference.resolved if reference else None
    return isinstance(resolved, discord.Message) and getattr(resolved, "author", None) is not None \
        and resolved.author.id == bot_id


def destination(session_key: str) -> tuple[str, int]:
    """("dm", user id) or ("channel", channel or thread id) that replies go to."""
    parts = session_key.split(":")
    if parts[1] == "dm":
        return "dm", int(parts[2])
    return "channel", int(parts[4] if parts[1] == "thread" else parts[3])


class DiscordPlatform:
    name = NAME

    def __init__(self, settings: DiscordConfig, inbox: Inbox, router: Directory) -> None:
        self._settings = settings
        self.token: str | None = None  # as read when it started: a reload compares it with the file
        self._inbox = inbox
        self._router = router
        self._client = self._new_client()
        self._connected = anyio.Event()
        self._state, self._error = "starting", ""
        self._intake_open = True
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._typing = TypingIndicator(self._send_typing, every=8.0)  # Discord's lasts 10 s
        self._tasks: TaskGroup | None = None
        self._catch_up = CatchUp(inbox, NAME)
        self._threads = ThreadStarter()

    def _new_client(self) -> discord.Client:
        """A fresh client per connection attempt: discord.py cannot log in again with a
        client it has closed (after a revoked token or missing intents)."""
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = intents.message_content = True
        intents.members = bool(self._settings.allowed_roles)  # roles of message authors
        client = discord.Client(intents=intents)
        for handler in (self.on_message, self.on_connect, self.on_ready, self.on_resumed, self.on_disconnect):
            client.event(handler)
        return client

    def status(self) -> dict[str, object]:
        return {"state": self._state, "error": self._error}

    def close_intake(self) -> None:
        self._intake_open = False

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            token = self._settings.read_token()
        except ConfigError as exc:
            self._state, self._error = "no token", str(exc)
            log.error("discord_disabled", error=str(exc))
            task_status.started()
            return
        log.add_secret(token)
        self.token = token
        if self._settings.api_base:  # tests, or a proxy: both are class-wide in discord.py
            discord.http.Route.BASE = self._settings.api_base.rstrip("/")
        if self._settings.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self._settings.gateway_url)
        task_status.started()
        async with anyio.create_task_group() as self._tasks:
            try:
                await self._run(token)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._client.close()


    async def _run(self, token: str) -> None:
        """Connect, and again after whatever discord.py gives up on; it handles resumes and
        ordinary reconnects itself."""
        delay = 5.0
        while True:
            try:
                self._state = "connecting"
                await self._client.login(token)
                await self._client.connect(reconnect=True)
                self._state, self._error = "retrying", "the gateway connection ended"
            except discord.LoginFailure as exc:
                self._state, self._error = "token rejected", str(exc)
                delay = 300.0  # a revoked token will not heal by itself soon
            except discord.PrivilegedIntentsRequired as exc:
                self._state, self._error = "intents missing", str(exc)
                delay = 300.0  # needs a change in the developer portal
            except Exception as exc:  # besides network errors, discord.py's event parsers raise
                # KeyError/TypeError on a malformed event: reconnect, never end the platform
                self._state, self._error = "retrying", f"{type(exc).__name__}: {exc}"
            log.warning("discord_connect_failed", error=self._error, retry_in=f"{delay:.0f}")
            self._connected = anyio.Event()  # replies wait for the next client
            with anyio.CancelScope(shield=True):
                await self._client.close()
            await anyio.sleep(delay)
            delay = min(delay * 2, 300.0)
            self._client = self._new_client()

    async def on_connect(self) -> None:
        """A new session (READY): its messages may come before `on_ready`, which discord.py
        holds back until the guilds have arrived."""
        self._catch_up.interrupted()

    async def on_ready(self) -> None:
        self._state, self._error = "ready", ""
        self._connected.set()
        log.info("discord_ready", user=str(self._client.user), guilds=len(self._client.guilds))
        await self._catch_up.run(self._client, self._take)

    async def on_resumed(self) -> None:
        self._state, self._error = "ready", ""
        await self._catch_up.run(self._client, self._take)

    async def on_disconnect(self) -> None:
        self._state = "reconnecting"
        self._catch_up.interrupted()

    # ---------------------------------------------------------------- messages in

    async def on_message(self, message: discord.Message) -> None:
        await self._catch_up.wait(message.channel.id)
        await self._take(message)

    async def _take(self, message: discord.Message) -> bool:
        """A live message or one read back from history; True if it was spooled as new."""
        me = self._client.user
        if me is None or not self._intake_open:
            return False
        incoming = await self._incoming(message, me.id)
        if incoming is None:
            self._catch_up.read(message.channel.id, message.id, taken=False)
            return False
        try:
            _entry, _route, new = self._inbox.receive(incoming)
        except SpoolUnavailable as exc:  # the gateway will not replay it: tell the sender
            log.error("discord_message_refused", session=incoming.session_key, error=str(exc))
            try:
                await message.channel.send(UNAVAILABLE)
            except (discord.DiscordException, OSError) as send_exc:
                log.warning("discord_send_failed", session=incoming.session_key, error=str(send_exc))
            return False
        self._catch_up.read(message.channel.id, message.id, taken=True)
        return new

    async def _incoming(self, message: discord.Message, bot_id: int) -> Incoming | None:
        """The message to spool, or None where the filters (who, where, mentions) drop it."""
        parsed = parse_message(message, self._settings, bot_id)
        if isinstance(parsed, Skip):
            if parsed.malformed:
                log.warning("discord_message_skipped", reason=parsed.reason)
            return None
        key, route, settings = parsed.session_key, self._router.route(parsed.session_key), self._settings
        in_thread = settings.reply_in_thread if route.reply_in_thread is None else route.reply_in_thread
        if in_thread and key.startswith("discord:channel:"):
            key = thread_key(key, message.id)
            route = self._router.route(key)
        mention_needed = settings.require_mention if route.require_mention is None else route.require_mention
        if parsed.in_guild and mention_needed and not parsed.addressed:
            return None
        allowed = route.allowed_users if route.allowed_users is not None else settings.allowed_users
        if not (permitted(parsed.sender, allowed) or self._has_role(message)):
            log.info("discord_user_refused", user=parsed.sender, session=key)
            return None
        text = parsed.text
        for path in await self._download(message, route.agent):
            text += f"\n[attached file: {path}]"
        if not text.strip():
            return None
        if key != parsed.session_key:
            self._threads.expect(message.id, parsed.text)
        return Incoming(platform=NAME, external_id=str(message.id), session_key=key,
                        text=text, sender=str(parsed.sender))

    def _has_role(self, message: discord.Message) -> bool:
        roles = getattr(message.author, "roles", ())
        return any(role.id in self._settings.allowed_roles for role in roles)

    async def _download(self, message: discord.Message, agent: str | None) -> list[str]:
        workspace = self._router.workspace_of(agent) if agent else None
        if workspace is None:
            return []
        saved = []
        for attachment in getattr(message, "attachments", ()):  # unset when the payload lacks it
            relative = f"inbox/{message.channel.id}-{message.id}-{Path(attachment.filename).name}"
            if attachment.size > MAX_DOWNLOAD:
                saved.append(f"{relative} (not downloaded: over {MAX_DOWNLOAD // 2**20} MB)")
                continue
            target = workspace / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                await attachment.save(target)
                saved.append(relative)
            except (discord.HTTPException, OSError) as exc:
                log.warning("discord_download_failed", file=attachment.filename, error=str(exc))
                saved.append(f"{relative} (download failed)")
        return saved

    # ---------------------------------------------------------------- replies out

    async def _channel(self, session_key: str) -> Any:
        """Something to send to; a partial one (an id, no fetch) when it is not cached.
        A thread `reply_in_thread` keyed a message under is started first."""
        await self._threads.ensure(self._client, session_key)
        kind, target = destination(session_key)
        if kind == "dm":
            if target not in self._dm_channels:
                data = await self._client.http.start_private_message(target)
                self._dm_channels[target] = int(data["id"])
            target = self._dm_channels[target]
        return self._client.get_channel(target) or self._client.get_partial_messageable(target)

    async def deliver(self, reply: Sending) -> bool:
        """Parts of at most 2,000 characters, then the files, from the first part not sent
        before (`split` cuts the same text the same way every time).  discord.py waits out
        429s; after another failure the reply goes on from the part that failed.  A channel
        that is gone or forbidden will not come back, so that reply is dropped; so is a file
        the server refuses as too large (413)."""
        texts = split(reply.text, MAX_CHARS, measure=utf16_len) if reply.text.strip() else []
        parts = [(False, text) for text in texts] + [(True, path) for path in reply.files]
        done, delay = reply.parts_sent, 1.0
        while done < len(parts):
            await self._connected.wait()
            try:
                channel = await self._channel(reply.session_key)
                for is_file, part in parts[done:]:
                    if is_file:
                        await self._send_file(channel, part, reply.agent)
                    else:
                        await channel.send(part)
                    done += 1
                    reply.sent(done)
            except (discord.Forbidden, discord.NotFound) as exc:
                log.error("discord_undeliverable", agent=reply.agent, session=reply.session_key, error=str(exc))
                return True
            except (discord.DiscordException, OSError, RuntimeError) as exc:  # RuntimeError: a closed session
                if isinstance(exc, discord.HTTPException) and exc.status == 413:
                    log.error("discord_undeliverable", agent=reply.agent, session=reply.session_key,
                              error=f"part {done + 1} too large: {exc}")
                    done += 1
                    reply.sent(done)
                    continue
                log.warning("discord_send_failed", agent=reply.agent, session=reply.session_key,
                            error=str(exc), retry_in=f"{delay:.0f}")
                await anyio.sleep(delay)
                delay = min(delay * 2, 60.0)
        return True

    async def _send_file(self, channel: Any, path: str, agent: str) -> None:
        try:
            file = attachments.open_checked(path, self._router.file_roots(agent))
        except (OSError, attachments.Refused) as exc:
            log.warning("file_not_sent", agent=agent, file=path, reason=str(exc))
            return
        with file:
            await channel.send(file=discord.File(file, filename=Path(path).name))

    async def finished(self, msg_id: int, session_key: str, error: str | None) -> None:
        self._typing.stop(session_key)

    def typing(self, session_key: str) -> None:
        if self._tasks is not None and self._connected.is_set():
            self._typing.start(self._tasks, session_key)

    async def _send_typing(self, session_key: str) -> None:
        channel = await self._channel(session_key)
        await channel.typing()
