"""Discord: answering what was said while hermesd was not connected.

A gateway session carries only what is said while it is up: a resume replays a short gap, a
new session (after a restart, a crash, an outage too long to resume) nothing.  So hermesd
remembers, per channel, thread or DM it has taken a message from, the newest message id it
read there (in the spool, so it outlives the process), and after every connect, both a new
session (`on_ready`) and a resumed one (`on_resumed`), it reads each such channel's history
after that id and passes it through the same path as a live message: the same filters, and
the spool's dedup by message id, so a message seen live and in history is answered once.
Until that is done, live messages of those channels wait, so each channel is taken in order.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio
import discord

from hermesd import log
from hermesd.platforms import Inbox
from hermesd.spool import SpoolUnavailable

MAX_MESSAGES = 50
"""At most this many messages per channel are read back, the newest: one REST call per
channel on each reconnect (Discord pages history by 100), and a channel where more than this
was said meanwhile holds chatter, not a handful of questions to answer one by one."""

MAX_AGE = 24 * 3600.0
"""Seconds: nothing older is read back.  An answer a day late is of little use, and after a
longer outage people have asked again or moved on."""

QUIET_FOR = 30 * 86400.0
"""Seconds: a channel where hermesd has read nothing for this long is not scanned any more,
since each scan costs a REST call on every reconnect and old conversations add up."""

Take = Callable[[discord.Message], Awaitable[bool]]
"""The adapter's path for one message; True if it was spooled as new."""


def snowflake_at(seconds_ago: float) -> int:
    """The lowest Discord id of a message sent `seconds_ago`: ids begin with their time."""
    return discord.utils.time_snowflake(datetime.fromtimestamp(time.time() - seconds_ago, UTC))


class CatchUp:
    """The read positions of one Discord bot, and reading back from them."""

    def __init__(self, inbox: Inbox, platform: str) -> None:
        self._inbox, self._platform = inbox, platform
        self._positions = {int(place): position for place, position in inbox.read_positions(platform).items()}
        self._caught_up = anyio.Event()  # set once the current connection has read back
        self._running = anyio.Lock()  # a resume soon after a new session waits for its catch-up

    def interrupted(self) -> None:
        """A connection begins or was lost: live messages of known channels wait for the
        next catch-up (a resume replays the gap before `on_resumed`)."""
        if self._caught_up.is_set():
            self._caught_up = anyio.Event()

    async def wait(self, channel_id: int) -> None:
        """Before a live message is taken: the older messages of its channel go first."""
        if channel_id in self._positions:
            await self._caught_up.wait()

    def read(self, channel_id: int, message_id: int, taken: bool) -> None:
        """A message was handled (`taken`: spooled).  A channel is followed from the first
        message taken there on; after that every message read there moves its position."""
        known = self._positions.get(channel_id)
        if (known is None and not taken) or (known is not None and message_id <= known):
            return
        try:
            self._inbox.advance(self._platform, str(channel_id), message_id)
        except SpoolUnavailable:
            return  # read back once more after the next connect; the spool drops repeats
        self._positions[channel_id] = message_id

    async def run(self, client: discord.Client, take: Take) -> None:
        """Read back every channel followed and not quiet, then let live messages through."""
        caught_up = self._caught_up
        try:
            async with self._running:
                oldest, quiet = snowflake_at(MAX_AGE), snowflake_at(QUIET_FOR)
                for channel_id, position in sorted(self._positions.items()):
                    if position >= quiet:
                        await self._channel(client, channel_id, position, oldest, take)
        finally:
            caught_up.set()  # whatever failed, live messages must not wait for ever

    async def _channel(self, client: discord.Client, channel_id: int, position: int, oldest: int,
                       take: Take) -> None:
        try:
            await self._read_back(client, channel_id, position, oldest, take)
        except (discord.NotFound, discord.Forbidden) as exc:  # deleted, or the bot was shut out:
            self._positions.pop(channel_id, None)  # not asked again in this run, unless taken from
            log.warning("discord_catch_up_failed", channel=channel_id, error=str(exc))
        except Exception as exc:  # besides network errors, discord.py's parsers raise KeyError or
            # TypeError on a malformed payload: one channel's failure must not stop the others
            log.warning("discord_catch_up_failed", channel=channel_id, error=f"{type(exc).__name__}: {exc}")

    async def _read_back(self, client: discord.Client, channel_id: int, position: int, oldest: int,
                         take: Take) -> None:
        """The newest MAX_MESSAGES after `position` (one more is asked for, to know whether
        any were cut), oldest first, each no older than `oldest`."""
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        history = channel.history(limit=MAX_MESSAGES + 1, after=discord.Object(position), oldest_first=False)
        fetched = [message async for message in history]  # newest first
        too_many = len(fetched) > MAX_MESSAGES
        window = fetched[:MAX_MESSAGES][::-1]
        fresh = [message for message in window if message.id >= oldest]
        count = 0
        for message in fresh:
            if await take(message):
                count += 1
        if fresh:
            log.info("discord_caught_up", channel=channel_id, count=count, read=len(fresh))
        if too_many or len(window) > len(fresh):
            log.warning("discord_catch_up_cut", channel=channel_id, older_than_max_age=len(window) - len(fresh),
                        over_max_messages=too_many)
