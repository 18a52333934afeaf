"""Telegram: one bot for every agent.

Polling is our own `getUpdates` loop over python-telegram-bot's `Bot` (not `Application`,
whose polling stalls for good on one update it cannot parse): updates are parsed one by
one, a malformed one is logged and skipped, each is written to the spool, and only then is
the offset moved past it.  An update's id in the spool (its `external_id`, which makes a
fetch repeated after a crash a no-op) is `<bot id>:<update id>`: each bot numbers its
updates from its own start, so after a change of bot the same number is a new update.
Replies leave through one flood gate shared by all agents.
The token stays in this process: workers never see it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from telegram import Bot, BotCommand
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from hermesd import attachments, log
from hermesd.config import ConfigError, TelegramConfig
from hermesd.platforms import Directory, Inbox, Sending, permitted
from hermesd.platforms import telegram_updates as updates
from hermesd.platforms.formatting import render
from hermesd.platforms.typing_indicator import TypingIndicator
from hermesd.ratelimit import FloodGate
from hermesd.spool import Incoming, SpoolUnavailable

NAME = "telegram"
POLL_TIMEOUT = 25  # seconds a getUpdates call waits for news
PAUSE = 5.0  # seconds to wait while the spool cannot store updates
CLOSE_TIMEOUT = 5.0  # seconds closing the HTTP connections may take when stopped
MAX_DOWNLOAD = 20 * 1024 * 1024  # the Bot API serves files up to 20 MB anyway
COMMANDS = [("new", "start a fresh conversation"), ("reset", "same as /new"),
            ("status", "agent, model, session and token use"), ("help", "what I can do")]
REFUSAL = "Sorry, this bot only talks to people it was set up for."
REFUSAL_EVERY = 3600.0  # seconds: one polite refusal per unknown user per hour
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}

warnings.filterwarnings("ignore", category=PTBUserWarning)  # raw getUpdates is deliberate


def _seconds(value: Any) -> float:
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


def _bot_id(token: str) -> str:
    """A token is `<bot id>:<secret>`; the id stays when the secret is revoked and renewed."""
    return token.partition(":")[0]


class TelegramPlatform:
    name = NAME

    def __init__(self, settings: TelegramConfig, inbox: Inbox, router: Directory,
                 previous: TelegramPlatform | None = None) -> None:
        self._settings = settings
        self.offset = previous.offset if previous else None
        """The next update to fetch: one started by a reload goes on from the one it
        replaces, so no update is fetched twice or skipped (if it is the same bot)."""
        self._previous_bot = _bot_id(previous.token) if previous and previous.token else None
        self.token: str | None = None  # as read when it started: a reload compares it with the file
        self._inbox = inbox
        self._router = router
        self._gate = FloodGate()
        self._bot: Bot | None = None
        self._ready = anyio.Event()
        self._intake_open = True
        self._state = "starting"
        self._error = ""
        self._refused: dict[int, float] = dict(previous._refused) if previous else {}  # user -> when
        self._typing = TypingIndicator(self._send_typing, every=4.0)  # Telegram's lasts 5 s
        self._tasks: TaskGroup | None = None

    # ---------------------------------------------------------------- lifecycle

    def status(self) -> dict[str, object]:
        return {"state": self._state, "error": self._error, "waiting_to_send": self._gate.waiting()}

    def close_intake(self) -> None:
        self._intake_open = False

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            token = self._settings.read_token()
        except ConfigError as exc:  # the daemon and its other platforms carry on without it
            self._set_state("no token", str(exc))
            log.error("telegram_disabled", error=str(exc))
            task_status.started()
            return
        log.add_secret(token)
        self.token = token
        if _bot_id(token) != self._previous_bot:  # a new bot numbers its updates apart
            self.offset = None
        base = self._settings.api_base or "https://api.telegram.org/bot"
        self._bot = Bot(
            token, base_url=base, base_file_url=base.removesuffix("/bot") + "/file/bot",
            request=HTTPXRequest(connection_pool_size=32),
            get_updates_request=HTTPXRequest(read_timeout=POLL_TIMEOUT + 10),
        )  # fmt: skip
        task_status.started()  # the daemon does not wait for Telegram to be reachable
        try:
            async with anyio.create_task_group() as self._tasks:
                await self._connect()
                await self._poll()
                await anyio.sleep_forever()  # replies still go out while the daemon drains
        finally:  # stopped (a reload replaces it): close its HTTP connections
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._bot.shutdown()

    async def _connect(self) -> None:
        """getMe, deleteWebhook, setMyCommands; retried until they work."""
        assert self._bot is not None
        delay = 1.0
        while True:
            try:
                await self._bot.initialize()
                await self._bot.delete_webhook()
                await self._bot.set_my_commands([BotCommand(*c) for c in COMMANDS])
                self._set_state("polling")
                log.info("telegram_connected", bot=self._bot.username)
                self._ready.set()
                return
            except TelegramError as exc:
                delay = await self._failed("connect", exc, delay)

    async def _poll(self) -> None:
        """Fetch and take updates until the intake closes.  An update is confirmed to
        Telegram only by the next getUpdates (its offset), so one fetched after the intake
        closed is left unconfirmed: Telegram gives it again at the next start."""
        assert self._bot is not None
        delay = 1.0
        while self._intake_open:
            try:
                batch = await self._bot.do_api_request(
                    "getUpdates", api_kwargs={"offset": self.offset, "timeout": POLL_TIMEOUT,
                                              "allowed_updates": ["message"]},
                    read_timeout=POLL_TIMEOUT + 10, return_type=None,
                )  # fmt: skip
            except TelegramError as exc:
                delay = await self._failed("poll", exc, delay)
                continue
            delay = 1.0
            self._set_state("polling")
            for raw in batch if isinstance(batch, list) else []:
                if not self._intake_open:
                    break
                update_id = raw.get("update_id") if isinstance(raw, dict) else None
                if isinstance(update_id, int):
                    try:
                        await self._take(raw, update_id)  # spooled before the offset moves
                    except SpoolUnavailable as exc:  # Telegram keeps it; fetch it again later
                        self._set_state("paused", str(exc))
                        log.warning("telegram_paused", update_id=update_id, error=str(exc),
                                    retry_in=f"{PAUSE:.0f}")
                        await anyio.sleep(PAUSE)
                        break
                    self.offset = max(self.offset or 0, update_id + 1)
                else:
                    log.warning("telegram_update_skipped", reason="no update_id")

    async def _failed(self, doing: str, exc: TelegramError, delay: float) -> float:
        """Log, show in status, wait; returns the next backoff."""
        if isinstance(exc, RetryAfter):
            wait = _seconds(exc.retry_after)
        elif isinstance(exc, (InvalidToken, Forbidden)):
            self._set_state("token rejected", str(exc))
            wait = 300.0  # a revoked token will not heal by itself soon
        elif isinstance(exc, Conflict):
            self._set_state("conflict", "another getUpdates poller uses this token")
            wait = delay
        else:
            self._set_state("retrying", f"{type(exc).__name__}: {exc}")
            wait = delay
        log.warning(f"telegram_{doing}_failed", error=f"{type(exc).__name__}: {exc}",
                    retry_in=f"{wait:.1f}")
        await anyio.sleep(wait)
        return min(delay * 2, 60.0)

    def _set_state(self, state: str, error: str = "") -> None:
        self._state, self._error = state, error

    # ---------------------------------------------------------------- updates in

    async def _take(self, raw: dict[str, Any], update_id: int) -> None:
        assert self._bot is not None
        parsed = updates.parse_update(raw, self._bot, self._settings, self._bot.id, self._bot.username)
        if isinstance(parsed, updates.Skip):
            if parsed.malformed:  # one bad update must not wedge the loop
                log.warning("telegram_update_skipped", update_id=update_id, reason=parsed.reason)
            return
        route = self._router.route(parsed.session_key)
        allowed = route.allowed_users if route.allowed_users is not None else self._settings.allowed_users
        if not permitted(parsed.sender, allowed):
            await self._refuse(parsed.sender, parsed.session_key)
            return
        text = parsed.text
        for path in await self._download(parsed, route.agent):
            text += f"\n[attached file: {path}]"
        if not text.strip():
            return  # stickers, service messages and the like: nothing to answer
        self._inbox.receive(Incoming(
            platform=NAME, external_id=f"{self._bot.id}:{update_id}", session_key=parsed.session_key, text=text,
            sender=str(parsed.sender),
        ))  # fmt: skip

    async def _refuse(self, user: int, session_key: str) -> None:
        log.info("telegram_user_refused", user=user, session=session_key)
        now = time.monotonic()
        if now - self._refused.get(user, -REFUSAL_EVERY) < REFUSAL_EVERY:
            return
        self._refused[user] = now
        await self._send(session_key, "", [(REFUSAL, REFUSAL)])

    async def _download(self, parsed: updates.Parsed, agent: str | None) -> list[str]:
        """Photos and documents go to the agent's `inbox/`; the message carries their paths."""
        attachment, message = parsed.attachment, parsed.message
        workspace = self._router.workspace_of(agent) if agent else None
        if attachment is None or workspace is None:
            return []
        name = getattr(attachment, "file_name", None) or f"photo-{attachment.file_unique_id}.jpg"
        relative = f"inbox/{message.chat.id}-{message.message_id}-{Path(name).name}"
        if (attachment.file_size or 0) > MAX_DOWNLOAD:
            return [f"{relative} (not downloaded: over {MAX_DOWNLOAD // 2**20} MB)"]
        target = workspace / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            file = await attachment.get_file()
            await file.download_to_drive(target)
        except (TelegramError, OSError) as exc:
            log.warning("telegram_download_failed", file=name, error=str(exc))
            return [f"{relative} (download failed)"]
        return [relative]

    # ---------------------------------------------------------------- replies out

    async def deliver(self, reply: Sending) -> bool:
        """The text's chunks, then the files; from the first part not sent before (`render`
        cuts the same text the same way every time)."""
        await self._ready.wait()
        parts: list[tuple[str, str] | str] = [*(render(reply.text) if reply.text.strip() else []),
                                              *reply.files]
        return await self._send(reply.session_key, reply.agent, parts, first=reply.parts_sent,
                                sent=reply.sent)

    async def finished(self, msg_id: int, session_key: str, error: str | None) -> None:
        self._typing.stop(session_key)

    async def _send(
        self, session_key: str, agent: str, parts: list[tuple[str, str] | str], first: int = 0,
        sent: Callable[[int], None] | None = None,
    ) -> bool:
        """Send the parts from `first` on, chunks as (html, plain) and files as paths,
        waiting for the flood gate, and say through `sent` how many are out after each;
        True once Telegram has them all, or when it refuses for good (chat gone, bot
        blocked): retrying would not help."""
        assert self._bot is not None
        chat, thread = updates.destination(session_key)
        for number, part in enumerate(parts[first:], first + 1):
            delay = 1.0
            while True:
                await self._gate.wait(agent, chat)
                try:
                    if isinstance(part, str):
                        await self._send_file(chat, thread, part, agent)
                    else:
                        await self._send_one(chat, thread, *part)
                    break
                except RetryAfter as exc:
                    self._gate.retry_after(chat, _seconds(exc.retry_after))
                except (Forbidden, BadRequest) as exc:
                    log.error("telegram_undeliverable", agent=agent, session=session_key, error=str(exc))
                    return True
                except (TimedOut, NetworkError) as exc:
                    log.warning("telegram_send_failed", agent=agent, session=session_key,
                                error=str(exc), retry_in=f"{delay:.0f}")
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 60.0)
            if sent is not None:
                sent(number)
        return True

    async def _send_one(self, chat: int, thread: int | None, html: str, plain: str) -> None:
        assert self._bot is not None
        try:
            await self._bot.send_message(chat, html, parse_mode=ParseMode.HTML,
                                         message_thread_id=thread)
        except BadRequest as exc:
            if "parse entities" not in str(exc).lower():
                raise
            await self._bot.send_message(chat, plain, message_thread_id=thread)

    async def _send_file(self, chat: int, thread: int | None, path: str, agent: str) -> None:
        assert self._bot is not None
        try:
            file = attachments.open_checked(path, self._router.file_roots(agent))
        except (OSError, attachments.Refused) as exc:
            log.warning("file_not_sent", agent=agent, file=path, reason=str(exc))
            return
        with file:
            name = Path(path).name
            if Path(path).suffix.lower() in PHOTO_SUFFIXES:
                await self._bot.send_photo(chat, file, message_thread_id=thread, filename=name)
            else:
                await self._bot.send_document(chat, file, message_thread_id=thread, filename=name)

    def typing(self, session_key: str) -> None:
        if self._tasks is not None and self._ready.is_set():
            self._typing.start(self._tasks, session_key)

    async def _send_typing(self, session_key: str) -> None:
        """Outside the flood gate (it must not take a reply's place), but not while a 429
        holds the chat, and a 429 it gets holds the chat's replies too."""
        assert self._bot is not None
        chat, thread = updates.destination(session_key)
        if self._gate.held(chat):
            return
        try:
            await self._bot.send_chat_action(chat, ChatAction.TYPING, message_thread_id=thread)
        except RetryAfter as exc:
            self._gate.retry_after(chat, _seconds(exc.retry_after))
