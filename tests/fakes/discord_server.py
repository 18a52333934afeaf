"""A scriptable fake of Discord's REST API and gateway, so adapter tests never need Discord or a real bot.

aiohttp on 127.0.0.1 in a background thread with its own loop, so discord.py runs its true client path:
login (``/users/@me``, ``/oauth2/applications/@me``), the gateway WebSocket (HELLO, IDENTIFY -> READY and
GUILD_CREATE, heartbeat ACKs, RESUME with replay), sends, channel history, threads started from a
message (Discord's 160004 for a second one), and 429s with the headers
discord.py trusts. A user message posted with ``live=False`` is only in its channel's history: what was
said while the bot was not connected.
discord.py >= 2.4 no longer asks ``/gateway`` where to connect, so point both halves at the fake::

    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

In-process: ``with FakeDiscord() as fake``; as a process: ``python tests/fakes/discord_server.py [--port N]``
prints the listening line; then ``POST /_admin/<method>`` with keyword arguments as JSON calls the method.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import mimetypes
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import web

Json = dict[str, Any]
Files = Iterable[tuple[str, bytes]]  # (filename, data), for attachments in and uploads out
TOKEN = "fake-discord-token"
BOT_ID = 1100000000000000001
EPOCH_MS = 1420070400000  # Discord's snowflake epoch: ids made here carry a believable created_at
GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 12, 1 << 15
EVERYONE_PERMS = sum(1 << b for b in (6, 10, 11, 14, 15, 16, 35, 38))  # react, view, send, embed, attach,
# read history, create threads, send in threads: what a chat bot needs, so permission checks pass
NO_CONTENT = re.compile(r"POST /channels/\d+/typing|DELETE /channels/\d+/messages/\d+"  # 204s without a body
                        r"|(PUT|DELETE) /channels/\d+/messages/\d+/reactions/[^/]+/@me")
ADMIN = {"add_guild", "channel_message", "thread_message", "start_thread", "dm", "sent", "calls", "fail", "disconnect",
         "reset"}


class ApiError(Exception):
    """A Discord error answer: the HTTP status discord.py maps to exceptions, and Discord's body."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, "code": code}


@dataclass
class _Session:
    """One gateway session: it outlives its socket so that RESUME can replay what the client missed."""

    id: str
    intents: int
    ws: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None
    buffer: list[str] = field(default_factory=list)  # dispatch frames; a frame's sequence number is index + 1
    cursor: int = 0  # how much of the buffer went to the current socket
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)  # one writer at a time keeps frames in order


def _now(age: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() - age, UTC).isoformat()


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Exactly ``application/json``: discord.py compares the header verbatim, and a charset breaks it."""
    return web.Response(status=status, body=json.dumps(payload, default=lambda b: b.decode(errors="replace"))
                        .encode(), headers={"Content-Type": "application/json", **(headers or {})})


class FakeDiscord:
    """The fake's state and its server thread. Handlers run on the server's loop and admin calls on the
    test's thread, so one condition guards all state; sockets are only ever written on the loop.
    """

    def __init__(self, port: int = 0, token: str = TOKEN, bot_id: int = BOT_ID, heartbeat_ms: int = 1000) -> None:
        self.port, self.token, self.bot_id, self.heartbeat_ms = port, token, bot_id, heartbeat_ms
        self.url = self.api_base = self.gateway_url = ""  # set by start()
        self.cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.guilds: dict[int, Json] = {}  # id -> {"name", "channels", "threads", "members", "roles"}
        self.channels: dict[int, Json] = {}  # every channel, thread and DM by id, as Discord returns them
        self.dms: dict[int, int] = {}  # user id -> DM channel id
        self.sessions: dict[str, _Session] = {}
        self.pending: list[tuple[str, Json, int]] = []  # user messages from before anyone identified
        self.serial = itertools.count(1)
        self.reset()

    def start(self) -> str:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="fake-discord", daemon=True)
        self._thread.start()
        if not started.wait(10) or not self.url:
            raise RuntimeError(f"fake Discord could not listen on port {self.port}")
        return self.url

    def _serve(self, started: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self.port = runner.addresses[0][1]
            self.url, self.gateway_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}/gateway"
            self.api_base = f"{self.url}/api/v10"
        finally:
            started.set()  # start() reports a failure instead of waiting for nothing
        loop.run_forever()
        self.disconnect(1001)  # "going away"; let the close frames out before the loop ends
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget calls, scripted failures, messages and counters; guilds, DMs and sessions stay."""
        with self.cond:
            self.records: list[Json] = []
            self.fails: list[Json] = []
            self.messages: dict[int, Json] = {}
            self.files: dict[str, bytes] = {}  # attachment path -> data, served under /attachments/
            self.identified = self.resumed = 0
            self.cond.notify_all()

    def snowflake(self, age: float = 0.0) -> int:
        """A new id, of a message sent ``age`` seconds ago (ids begin with their time)."""
        return ((int((time.time() - age) * 1000) - EPOCH_MS) << 22) | (next(self.serial) & 0x3FFFFF)

    def user(self, user_id: int) -> Json:
        bot = user_id == self.bot_id
        return {"id": str(user_id), "username": "fakebot" if bot else f"user{user_id}", "global_name": None,
                "discriminator": "0", "avatar": None, "bot": bot, "public_flags": 0}

    def _member(self, guild_id: int, user_id: int, with_user: bool = True) -> Json:
        roles = [str(r) for r, users in self.guilds[guild_id]["roles"].items() if user_id in users]
        return ({"user": self.user(user_id)} if with_user else {}) | {
            "roles": roles, "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0}

    def add_guild(self, guild_id: int, name: str = "Fake Guild", channels: Iterable[tuple[int, str]] = (),
                  threads: Iterable[tuple[int, int, str]] = (), members: Iterable[int] = (),
                  roles: dict[int, list[int]] | None = None) -> Json:
        """A guild the bot is in (the bot is always a member): sent after READY, or at once if connected."""
        guild_id = int(guild_id)
        with self.cond:
            roles = {int(r): [int(u) for u in users] for r, users in (roles or {}).items()}
            everyone = {*map(int, members), *itertools.chain(*roles.values()), self.bot_id}
            guild = self.guilds[guild_id] = {"name": name, "channels": [], "threads": [], "roles": roles,
                                             "members": sorted(everyone)}
            for position, (channel_id, channel_name) in enumerate(channels):
                guild["channels"].append(channel_id := int(channel_id))
                self.channels[channel_id] = {
                    "id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": channel_name,
                    "position": position, "permission_overwrites": [], "nsfw": False, "parent_id": None,
                    "topic": None, "last_message_id": None, "rate_limit_per_user": 0}
            for thread_id, parent_id, thread_name in threads:
                self._add_thread(guild_id, int(thread_id), int(parent_id), thread_name)
            payload, live = self._guild_payload(guild_id), bool(self.sessions)
        if live:
            self._dispatch("GUILD_CREATE", payload, GUILDS)
        return payload

    def _add_thread(self, guild_id: int, thread_id: int, parent_id: int, name: str) -> Json:
        self.guilds[guild_id]["threads"].append(thread_id)
        self.channels[thread_id] = {
            "id": str(thread_id), "type": 11, "guild_id": str(guild_id), "parent_id": str(parent_id),
            "owner_id": str(self.bot_id), "name": name, "message_count": 0, "member_count": 1,
            "total_message_sent": 0, "rate_limit_per_user": 0, "flags": 0, "last_message_id": None,
            "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                "archive_timestamp": _now(), "create_timestamp": _now()}}
        return self.channels[thread_id]

    def _guild_payload(self, guild_id: int) -> Json:
        g = self.guilds[guild_id]
        roles = [{"id": str(guild_id), "name": "@everyone", "permissions": str(EVERYONE_PERMS), "position": 0}] + [
            {"id": str(r), "name": f"role{r}", "permissions": "0", "position": 1} for r in g["roles"]]
        return {"id": str(guild_id), "name": g["name"], "owner_id": str(g["members"][0]), "unavailable": False,
                "large": False, "member_count": len(g["members"]), "joined_at": _now(), "roles": roles,
                "channels": [self.channels[c] for c in g["channels"]], "emojis": [], "stickers": [],
                "threads": [self.channels[t] for t in g["threads"]], "features": [], "voice_states": [],
                "members": [self._member(guild_id, u) for u in g["members"]], "presences": []}

    def _dm_channel(self, user_id: int) -> Json:
        if user_id not in self.dms:
            self.dms[user_id] = channel_id = self.snowflake()
            self.channels[channel_id] = {"id": str(channel_id), "type": 1, "last_message_id": None,
                                         "recipients": [self.user(user_id)]}
        return self.channels[self.dms[user_id]]

    def _attach(self, channel_id: int, files: Files) -> list[Json]:
        """Keep the bytes under /attachments/, so ``Attachment.read()`` downloads them from the fake."""
        out = []
        for filename, data in files:
            data = data.encode() if isinstance(data, str) else data  # admin calls over HTTP send text
            self.files[path := f"{channel_id}/{self.snowflake()}/{filename}"] = data
            out.append({"id": path.split("/")[1], "filename": filename, "size": len(data), "url": (
                url := f"{self.url}/attachments/{path}"), "proxy_url": url, "content_type": mimetypes.guess_type(
                filename)[0] or "application/octet-stream"})
        return out

    def _message(self, channel_id: int, author_id: int, content: str, guild_id: int | None = None,
                 files: Files = (), mentions: Iterable[int] = (), reference: Json | None = None,
                 age: float = 0.0) -> Json:
        m = {"id": str(self.snowflake(age)), "channel_id": str(channel_id), "type": 19 if reference else 0,
             "content": content, "author": self.user(author_id), "attachments": self._attach(channel_id, files),
             "mentions": [self.user(u) | ({"member": self._member(guild_id, u, False)} if guild_id else {})
                          for u in mentions], "mention_roles": [], "mention_everyone": False, "pinned": False,
             "tts": False, "timestamp": _now(age), "edited_timestamp": None, "flags": 0, "components": [], "embeds": []}
        if guild_id is not None:
            m |= {"guild_id": str(guild_id), "member": self._member(guild_id, author_id, False)}
        if reference:
            m["message_reference"] = reference
        self.messages[int(m["id"])] = m
        return m

    def channel_message(self, guild_id: int, channel_id: int, author_id: int, content: str, mention_bot: bool = False,
                        reply_to_bot: bool = False, attachments: Files = (), live: bool = True,
                        age: float = 0.0) -> Json:
        """A user posts in a guild channel or thread. mention_bot writes ``<@bot>`` first and lists the bot in
        mentions; reply_to_bot answers the bot's last message there (or an invented one) without a ping.
        ``live=False``: only in the channel's history, never dispatched; ``age``: sent that many seconds ago."""
        guild_id, channel_id, author_id = int(guild_id), int(channel_id), int(author_id)
        with self.cond:
            guild = self.guilds.get(guild_id, {})
            if channel_id not in guild.get("channels", []) + guild.get("threads", []):
                raise ValueError(f"unknown channel {channel_id} in guild {guild_id}: add_guild() it first")
            if author_id not in guild["members"]:
                guild["members"].append(author_id)
            reference = earlier = None
            if reply_to_bot:
                mine = [m for m in self.messages.values() if m["channel_id"] == str(channel_id)
                        and m["author"]["id"] == str(self.bot_id)]
                earlier = mine[-1] if mine else self._message(channel_id, self.bot_id, "an earlier reply", guild_id)
                reference = {"type": 0, "message_id": earlier["id"], "channel_id": str(channel_id),
                             "guild_id": str(guild_id)}
            message = self._message(channel_id, author_id, f"<@{self.bot_id}> {content}" if mention_bot else content,
                                    guild_id, attachments, [self.bot_id] if mention_bot else [], reference, age)
            if earlier:
                message["referenced_message"] = earlier
        if live:
            self._dispatch("MESSAGE_CREATE", message, GUILD_MESSAGES, hold=True)
        return message

    def thread_message(self, guild_id: int, thread_id: int, author_id: int, content: str, mention_bot: bool = False,
                       **kw: Any) -> Json:
        """A user posts in a thread; on Discord a thread is a channel of its own, with the thread's id."""
        return self.channel_message(guild_id, thread_id, author_id, content, mention_bot, **kw)

    def start_thread(self, channel_id: int, message_id: int, name: str = "thread", dispatch: bool = True) -> Json:
        """A user starts a thread from a message; ``dispatch=False``: its THREAD_CREATE has not reached
        the bot yet (the bot does not know the thread)."""
        with self.cond:
            return self._thread_from(int(channel_id), int(message_id), name, dispatch)

    def _thread_from(self, channel_id: int, message_id: int, name: str, dispatch: bool = True) -> Json:
        """As Discord starts a thread from a message (lock held): one per message (160004)."""
        if self.messages.get(message_id, {}).get("channel_id") != str(channel_id):
            raise ApiError(404, "Unknown Message", 10008)
        if message_id in self.channels:
            raise ApiError(400, "A thread has already been created for this message", 160004)
        thread = self._add_thread(int(self.channels[channel_id]["guild_id"]), message_id, channel_id, name)
        if dispatch:
            self._dispatch("THREAD_CREATE", thread | {"newly_created": True}, GUILDS)
        return thread

    def dm(self, author_id: int, content: str, attachments: Files = (), live: bool = True) -> Json:
        """A user writes to the bot directly, in that user's one DM channel (so no guild_id);
        ``live=False``: only in the DM's history."""
        with self.cond:
            channel_id = int(self._dm_channel(int(author_id))["id"])
            message = self._message(channel_id, int(author_id), content, None, attachments)
        if live:
            self._dispatch("MESSAGE_CREATE", message, DIRECT_MESSAGES, hold=True)
        return message

    def raw_event(self, event: str, data: Json) -> None:
        """Dispatch `data` as it is, checked against nothing: a malformed event, as a
        gateway (or a change of Discord's payloads) might send one."""
        self._dispatch(event, data, 0)

    def fail(self, method: str, path_regex: str, status: int = 429, retry_after: float = 1.0, times: int = 1,
             after: int = 0) -> None:
        """Answer the next ``times`` calls matching method ("*": any) and path (re.search on the full path)
        with an error, once ``after`` matching calls went through (a reply's first part, not its second);
        a 429 has the body and headers that make discord.py wait ``retry_after``, then retry."""
        with self.cond:
            self.fails.append({"method": method.upper(), "regex": path_regex, "status": status,
                               "retry_after": retry_after, "times": times, "after": after})

    def calls(self) -> list[Json]:
        """Every request (REST, gateway connections, downloads): method, path, query, json, files, time, status."""
        with self.cond:
            return [dict(c) for c in self.records]

    def sent(self, path_contains: str | None = None) -> list[Json]:
        """What users would see: the successful POST /channels/{id}/messages, oldest first."""
        return [{"channel_id": int(m[1]), "content": (c["json"] or {}).get("content"), "files": c["files"],
                 "message_id": c["message_id"], "json": c["json"], "time": c["time"]} for c in self.calls()
                if c["method"] == "POST" and c["status"] == 200 and (path_contains or "") in c["path"]
                and (m := re.search(r"/channels/(\d+)/messages$", c["path"]))]

    def wait_identified(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Block until ``count`` IDENTIFYs (wait_resumed: RESUMEs) happened; from async code, in a thread."""
        with self.cond:
            return self.cond.wait_for(lambda: self.identified >= count, timeout)

    def wait_resumed(self, timeout: float = 5.0, count: int = 1) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.resumed >= count, timeout)

    def disconnect(self, code: int | None = 4000) -> None:
        """Drop every live gateway socket, with a close frame or abruptly (None). The sessions stay
        resumable and keep buffering, so the client's RESUME gets what was dispatched meanwhile."""
        with self.cond:
            live = [(s.ws, s.transport) for s in self.sessions.values() if s.ws is not None]
            for s in self.sessions.values():
                s.ws = s.transport = None
        for ws, transport in live:
            if code is None and transport is not None:
                self._soon(transport.abort)
            elif ws is not None:
                self._soon(lambda ws=ws: self._spawn(ws.close(code=code or 4000)))

    def _soon(self, fn: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, event: str, data: Json, intent: int, hold: bool = False) -> None:
        """Buffer a dispatch in every session (``hold``: for the first IDENTIFY if none yet), then send it."""
        with self.cond:
            if hold and not self.sessions:
                self.pending.append((event, data, intent))
            for session in self.sessions.values():
                self._enqueue(session, event, data, intent)
            sessions = list(self.sessions.values())
        self._soon(lambda: [self._spawn(self._flush(s)) for s in sessions])

    def _enqueue(self, session: _Session, event: str, data: Json, intent: int) -> None:
        """As on Discord: nothing without its intent; without MESSAGE_CONTENT, guild messages neither by nor
        mentioning the bot arrive with empty content, attachments and embeds."""
        if session.intents & intent != intent:
            return
        bot = str(self.bot_id)
        if (event == "MESSAGE_CREATE" and not session.intents & MESSAGE_CONTENT and "guild_id" in data
                and data["author"]["id"] != bot and bot not in [m["id"] for m in data["mentions"]]):
            data = data | {"content": "", "attachments": [], "embeds": []}
        session.buffer.append(json.dumps({"op": 0, "t": event, "s": len(session.buffer) + 1, "d": data}))

    async def _flush(self, session: _Session) -> None:
        async with session.sending:
            while True:
                with self.cond:
                    if (ws := session.ws) is None or session.cursor >= len(session.buffer):
                        return
                    frame, session.cursor = session.buffer[session.cursor], session.cursor + 1
                try:
                    await ws.send_str(frame)  # text frames: discord.py asks for zlib-stream but takes plain text
                except (ConnectionError, RuntimeError):
                    return  # gone meanwhile: a RESUME replays from the client's own sequence number

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None})
        session: _Session | None = None
        async for msg in ws:
            try:
                op, d = (payload := json.loads(msg.data))["op"], payload.get("d")
            except (TypeError, ValueError, KeyError):
                await ws.close(code=4002)  # Discord's "decode error"
                break
            if op == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op in (2, 6) and str((d or {}).get("token")).removeprefix("Bot ") != self.token:
                await ws.close(code=4004)  # "authentication failed": discord.py gives up, as it should
                break
            elif op in (2, 6):
                session = (self._identify if op == 2 else self._resume)(d, ws, request)
                if session is None:
                    await ws.send_json({"op": 9, "d": False, "s": None, "t": None})  # INVALID_SESSION
                else:
                    self._spawn(self._flush(session))
        with self.cond:
            if session is not None and session.ws is ws:
                session.ws = session.transport = None
                if ws.close_code in (1000, 1001):  # a clean close ends a session; discord.py sends 4000
                    self.sessions.pop(session.id, None)
        return ws

    def _identify(self, d: Json, ws: web.WebSocketResponse, request: web.Request) -> _Session:
        with self.cond:
            session = _Session(uuid.uuid4().hex, int(d.get("intents", 0xFFFFFFFF)), ws, request.transport)
            self.sessions[session.id] = session
            self._enqueue(session, "READY", {
                "v": 10, "user": self.user(self.bot_id) | {"verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds], "session_id": session.id,
                "resume_gateway_url": self.gateway_url, "shard": d.get("shard", [0, 1]), "private_channels": [],
                "relationships": [], "application": {"id": str(self.bot_id), "flags": 0}}, 0)
            for guild_id in self.guilds:
                self._enqueue(session, "GUILD_CREATE", self._guild_payload(guild_id), GUILDS)
            for event in self.pending:
                self._enqueue(session, *event)
            self.pending.clear()
            self.identified += 1
            self.cond.notify_all()
        return session

    def _resume(self, d: Json, ws: web.WebSocketResponse, request: web.Request) -> _Session | None:
        """Replay the session's dispatches after the client's last sequence number, then RESUMED."""
        with self.cond:
            session, seq = self.sessions.get(str(d.get("session_id"))), int(d.get("seq") or 0)
            if session is None or seq > len(session.buffer):
                return None
            if session.ws is not None:  # a second socket for one session: the old one loses
                self._spawn(session.ws.close(code=4000))
            session.ws, session.transport, session.cursor = ws, request.transport, seq
            self._enqueue(session, "RESUMED", {}, 0)  # after the replay, as Discord orders them
            self.resumed += 1
            self.cond.notify_all()
        return session

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every HTTP request: the gateway, admin calls, then REST, recorded before it is answered."""
        if request.path == "/gateway":
            self._record(request, status=101)
            return await self._gateway(request)
        if request.path.startswith("/_admin/") and request.path[8:] in ADMIN:
            result = await asyncio.to_thread(getattr(self, request.path[8:]), **await request.json())
            return _json(200, result)
        body, files = None, []
        if request.content_type == "application/json" and request.can_read_body:
            body = await request.json()
        elif request.content_type.startswith("multipart/"):  # discord.py: payload_json plus files[n]
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files.append((value.filename, value.file.read()))
                elif name == "payload_json":
                    body = json.loads(value)
        call, method, path = self._record(request, body, files), request.method, re.sub(r"^/api/v\d+", "", request.path)
        with self.cond:
            if rule := next((f for f in self.fails if f["method"] in (method, "*") and f["times"] > 0
                             and re.search(f["regex"], request.path)), None):
                if rule["after"] > 0:  # this call still goes through
                    rule["after"], rule = rule["after"] - 1, None
                else:
                    rule["times"] -= 1
        try:
            if rule and rule["status"] == 429:
                call["status"], retry = 429, rule["retry_after"]  # without Via discord.py assumes a Cloudflare ban
                return _json(429, {"message": "You are being rate limited.", "retry_after": retry, "global": False},
                             {"Via": "1.1 google", "Retry-After": str(math.ceil(retry)), "X-RateLimit-Limit": "5",
                              "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{retry:.3f}",
                              "X-RateLimit-Reset": f"{time.time() + retry:.3f}", "X-RateLimit-Scope": "user",
                              "X-RateLimit-Bucket": hashlib.md5(rule["regex"].encode()).hexdigest()[:16]})
            if rule:
                raise ApiError(rule["status"], f"fake {rule['status']}")
            if not path.startswith("/attachments/") and request.headers.get("Authorization") != f"Bot {self.token}":
                raise ApiError(401, "401: Unauthorized")
            with self.cond:
                status, result = self._route(method, path, body if isinstance(body, dict) else {}, files, call)
        except ApiError as error:
            status, result = error.status, error.body
        call["status"] = status
        if isinstance(result, bytes) or status == 204:
            return web.Response(status=status, body=result, content_type="application/octet-stream")
        return _json(status, result)

    def _history(self, channel_id: int, query: dict[str, str]) -> list[Json]:
        """As Discord pages a channel's messages: at most ``limit`` (1..100, default 50), newest first;
        with ``after`` the ones right after it, with ``before`` the ones right before it, else the latest."""
        try:
            limit = int(query.get("limit", 50))
            after, before = int(query.get("after", 0)), int(query.get("before", 1 << 63))
        except ValueError:
            raise ApiError(400, "Invalid Form Body (limit, after or before: not a snowflake)", 50035) from None
        if not 1 <= limit <= 100:
            raise ApiError(400, "Invalid Form Body (limit: must be between 1 and 100)", 50035)
        ids = sorted(i for i, m in self.messages.items() if m["channel_id"] == str(channel_id) and after < i < before)
        page = ids[:limit] if "after" in query and "before" not in query else ids[-limit:]
        return [{k: v for k, v in self.messages[i].items() if k not in ("guild_id", "member")}
                for i in reversed(page)]

    def _record(self, request: web.Request, body: Any = None, files: Files = (), status: int | None = None) -> Json:
        call = {"method": request.method, "path": request.path, "query": dict(request.query), "json": body,
                "files": list(files), "time": time.time(), "status": status, "message_id": None}
        with self.cond:
            self.records.append(call)
        return call

    def _route(self, method: str, path: str, body: Json, files: Files, call: Json) -> tuple[int, Any]:
        """One REST call, lock held: (status, JSON or bytes), or ApiError where Discord would refuse."""
        ids = [int(x) for x in re.findall(r"/(\d+)", path)]
        channel = self.channels.get(ids[0]) if path.startswith("/channels/") and ids else None
        if path.startswith("/channels/") and channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        if NO_CONTENT.fullmatch(f"{method} {path}"):
            return 204, None
        if method == "GET" and path == "/users/@me":
            return 200, self.user(self.bot_id) | {"verified": True, "mfa_enabled": False, "flags": 0}
        if method == "GET" and path in ("/oauth2/applications/@me", "/applications/@me"):  # login asks
            return 200, {"id": str(self.bot_id), "name": "fakebot", "description": "", "icon": None,
                         "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
                         "owner": self.user(1), "flags": 0, "bot": self.user(self.bot_id)}
        if method == "GET" and path in ("/gateway", "/gateway/bot"):
            return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}
        if method == "POST" and path == "/users/@me/channels":
            return 200, self._dm_channel(int(body.get("recipient_id", 0)))
        if method == "GET" and re.fullmatch(r"/channels/\d+", path):
            return 200, channel
        if method == "GET" and re.fullmatch(r"/channels/\d+/messages", path):
            return 200, self._history(ids[0], call["query"])
        if method == "GET" and path.startswith("/attachments/") and path[13:] in self.files:
            return 200, self.files[path[13:]]
        if method == "POST" and re.fullmatch(r"/channels/\d+/messages", path):
            content = body.get("content") or ""
            if not (content or files or body.get("embeds") or body.get("sticker_ids")):
                raise ApiError(400, "Cannot send an empty message", 50006)
            if len(content) > 2000:
                raise ApiError(400, "Invalid Form Body (content: Must be 2000 or fewer in length.)", 50035)
            guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
            ref = body.get("message_reference")
            message = self._message(ids[0], self.bot_id, content, guild_id, files, (),
                                    ref and {"channel_id": str(ids[0])} | ref)
            message["embeds"], call["message_id"] = body.get("embeds") or [], int(message["id"])
            # the bot sees its own message, as on Discord; dispatched now, so ahead of anything injected later
            self._dispatch("MESSAGE_CREATE", message, GUILD_MESSAGES if guild_id else DIRECT_MESSAGES)
            return 200, {k: v for k, v in message.items() if k not in ("guild_id", "member")}
        if method == "POST" and re.fullmatch(r"/channels/\d+(/messages/\d+)?/threads", path) and "guild_id" in channel:
            if len(ids) > 1:  # from a message: the thread gets the message's id
                return 201, self._thread_from(ids[0], ids[1], str(body.get("name", "thread")))
            thread = self._add_thread(int(channel["guild_id"]), self.snowflake(), ids[0], str(body.get("name", "thread")))
            self._dispatch("THREAD_CREATE", thread | {"newly_created": True}, GUILDS)
            return 201, thread
        raise ApiError(404, "Unknown", 0)  # recorded all the same: calls() shows what the fake lacks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Discord REST API and gateway for tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=TOKEN, help=f"accepted bot token (default {TOKEN})")
    args = parser.parse_args(argv)
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before start(), so the server thread inherits it
    fake = FakeDiscord(args.port, args.token)
    print(f"listening on {fake.start()}", flush=True)  # tests parse this line
    signal.sigwait(stops)  # Ctrl-C and SIGTERM both end here, for a clean shutdown
    fake.stop()


if __name__ == "__main__":
    main()
