"""Platform adapters translate a platform's traffic into spooled messages and back.

An adapter knows nothing of routing, storage or workers.  It gets an `Inbox` to put what
users say into (durably, before it acknowledges anything to the platform), and the daemon
calls `deliver` for every reply and `finished` when a message has been fully answered,
in the order the worker produced them.  A reply a platform takes in several parts says
through `Sending` which parts went out before, so a delivery cut short is resumed, not
repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

from anyio.abc import TaskStatus

from hermesd.routing import Route
from hermesd.spool import Inbound, Incoming, Outgoing


class Sending(Outgoing, frozen=True, kw_only=True):
    """A reply as `deliver` gets it.  An adapter that sends it in parts (text chunks, then
    files; the chunks cut the same way every time) skips the first `parts_sent`, which
    went out before a crash or a restart cut its delivery short, and calls `sent(n)` once
    the platform has accepted the first n, so the next attempt skips those too.  An
    adapter that sends a reply as one piece ignores both."""

    parts_sent: int = 0
    sent: Callable[[int], None]


class Inbox(Protocol):
    def receive(self, message: Incoming) -> tuple[Inbound, Route, bool]:
        """Spool a message, then route and deliver it.  Returns the entry, where it went,
        and False if its `external_id` was seen before (nothing new was delivered).  When it
        returns, the message is on disk: the adapter may acknowledge it to the platform.
        Raises SpoolUnavailable when it could not be stored: acknowledge nothing."""
        ...

    def open_messages(self, platform: str, session_key: str) -> list[int]:
        """Ids of this conversation's messages not yet fully answered."""
        ...

    def read_positions(self, platform: str) -> dict[str, int]:
        """Where this platform was read up to, per place (channel): for a platform that
        fetches what was said while it was disconnected."""
        ...

    def advance(self, platform: str, place: str, position: int) -> None:
        """Record that `place` was read up to `position` (never moves back).  Raises
        SpoolUnavailable when it could not be stored."""
        ...

    def retry(self, platform: str, session_key: str) -> None:
        """Queue this conversation's undelivered replies for `deliver` again (a client
        came back to it)."""
        ...

    async def room(self, platform: str, session_key: str) -> None:
        """Return once this conversation's queue of replies to send is short again: an
        adapter that can slow its sender down (a socket it stops reading) waits here, so a
        sender faster than its own replies cannot grow that queue without bound."""
        ...


class Directory(Protocol):
    """What a bot adapter looks up about agents: where a conversation goes, where the
    agent's files are (attachments in and out)."""

    def route(self, session_key: str) -> Route: ...

    def workspace_of(self, agent: str) -> Path | None: ...

    def file_roots(self, agent: str) -> list[Path]: ...


class Skip(NamedTuple):
    """Why an adapter drops an update; `malformed` ones are worth a warning in the log."""

    reason: str
    malformed: bool = False


def permitted(user_id: int, allowed: object) -> bool:
    """`allowed` is a list of user ids, or "*" (everyone, said explicitly)."""
    return allowed == "*" or (isinstance(allowed, list) and user_id in allowed)


class Adapter(Protocol):
    name: str

    async def serve(self, *, task_status: TaskStatus[None]) -> None:
        """Connect and pass messages to the inbox until cancelled; `started()` once
        listening."""
        ...

    def close_intake(self) -> None:
        """Stop taking new messages (the daemon is draining); replies still go out."""
        ...

    async def deliver(self, reply: Sending) -> bool:
        """Send one reply.  False = could not deliver now; it stays in the outbox."""
        ...

    async def finished(self, msg_id: int, session_key: str, error: str | None) -> None:
        """Every reply of `msg_id` has been handed to `deliver`."""
        ...

    def typing(self, session_key: str) -> None:
        """An agent started working on a message of this conversation."""
        ...

    def status(self) -> dict[str, object]:
        """What `hermesctl status` shows for this platform."""
        ...
