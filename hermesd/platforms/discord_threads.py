"""Discord: answering in a thread started from the message (`reply_in_thread`).

Discord gives a thread started from a message the message's id, so the conversation's key,
`discord:thread:<guild>:<channel>:<message>`, is known before the thread exists: the message
is spooled under it like any other, and the thread is started only when something is sent
there (the reply, or "typing…").  Follow-ups typed in the thread get the same key from
`session_key`, so the conversation goes on with its history.
"""

from __future__ import annotations

import discord

from hermesd import log

THREAD_EXISTS = 160004
"""Discord's error code for a second thread from one message: what was wanted is there."""
DEFAULT_NAME = "conversation"
NAME_CHARS = 50
REMEMBERED = 1000
"""Names kept for threads not started yet; a thread whose name was forgotten (or lost in a
restart) is called DEFAULT_NAME."""


def thread_key(channel_key: str, message_id: int) -> str:
    """`discord:channel:<guild>:<channel>[:<user>]` -> the key of the thread from that message."""
    _platform, _kind, guild, channel, *_user = channel_key.split(":")
    return f"discord:thread:{guild}:{channel}:{message_id}"


def thread_name(text: str) -> str:
    """The first words of what the user wrote, on one line, or DEFAULT_NAME."""
    name = " ".join(text.split())
    if len(name) > NAME_CHARS:
        name = name[:NAME_CHARS].rstrip() + "…"
    return name or DEFAULT_NAME


class ThreadStarter:
    """Starts a thread key's thread from its message before the first send into it."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}  # message id -> name of the thread to start from it

    def expect(self, message_id: int, text: str) -> None:
        """A message spooled under its thread's key: remember what to call the thread."""
        self._names[message_id] = thread_name(text)
        if len(self._names) > REMEMBERED:
            del self._names[next(iter(self._names))]

    async def ensure(self, client: discord.Client, session_key: str) -> None:
        """Start the thread of a thread key that discord.py has not seen.  A thread already
        started from that message (160004) is what was wanted; no such message in the parent
        channel means a thread that was not started from one (an archived thread is not
        cached either), which a send reaches as it is.  Other errors go to the caller, who
        retries or gives up as for a send."""
        parts = session_key.split(":")
        if parts[1] != "thread" or client.get_channel(int(parts[4])) is not None:
            return
        parent, thread = int(parts[3]), int(parts[4])
        name = self._names.get(thread, DEFAULT_NAME)
        try:
            await client.http.start_thread_with_message(parent, thread, name=name, auto_archive_duration=1440)
            log.info("discord_thread_started", session=session_key)
        except discord.NotFound:
            pass
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:
                raise
        self._names.pop(thread, None)
