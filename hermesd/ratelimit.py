"""Telegram flood control for one bot shared by many agents.

Telegram allows a bot ~1 message/s per chat, 20/min per group (chat id < 0) and 30/s in all,
else it answers 429 with `retry_after`.  Chat limits delay only that chat; the global budget
goes round-robin across agents with waiters (FIFO within one), so an agent flooding fifty
chats cannot put another agent's single reply last.  `_poke()` wakes the one ticket that may
go now; it grants itself as `wait()` returns and pokes the next.  Nothing is reserved, so a
cancelled waiter just leaves its queue and passes the poke on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's limits; the windows are settable so that tests can shrink them."""

    per_chat_interval: float = 1.0  # seconds between two sends to one chat
    group_per_minute: int = 20  # sends per `group_window` to one group chat (chat_id < 0)
    global_per_second: int = 30  # sends per `global_window` overall
    group_window: float = 60.0
    global_window: float = 1.0


@dataclass
class _Chat:
    last: float = -math.inf  # the last grant to this chat
    hold: float = -math.inf  # a 429 for this chat said to wait until then
    sends: deque[float] = field(default_factory=deque)  # groups: grants still in the window


@dataclass(eq=False)
class _Ticket:
    agent: str
    chat_id: int
    wake: anyio.Event
    parked: bool = False  # ready, but another's turn: sleeps with no timer until a poke


def _window_free(sends: deque[float], cap: int, window: float, now: float) -> float:
    """When one more send fits `cap` per rolling `window`; forgets sends that left it."""
    while sends and sends[0] + window <= now:
        sends.popleft()
    return sends[-cap] + window if len(sends) >= cap else -math.inf


class FloodGate:
    """Spaces sends so the bot stays within Telegram's flood limits, fairly across agents."""

    def __init__(self, limits: FloodLimits = FloodLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._chats: dict[int, _Chat] = {}
        self._sends: deque[float] = deque()  # all grants within the global window
        self._hold = -math.inf  # a global 429 said to wait until then
        self._queues: dict[str, deque[_Ticket]] = {}  # waiting tickets per agent, oldest first
        self._turns: deque[str] = deque()  # agents with waiters; the leftmost goes first
        self._sweep_at = -math.inf

    async def wait(self, agent: str, chat_id: int) -> None:
        """Return when a message to `chat_id` on behalf of `agent` may be sent now, and count it
        as sent. Cancellation-safe: a cancelled waiter takes no slot and leaves no trace."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        ticket = _Ticket(agent, chat_id, anyio.Event())
        if agent not in self._queues:
            self._turns.append(agent)
        self._queues.setdefault(agent, deque()).append(ticket)
        try:
            while self._poke(now := self._clock()) is not ticket:
                # Not our turn at this `now`: if ready, whose turn it is was woken and will poke.
                delay = max(self._global_free(now), self._chat_free(chat_id, now)) - now
                ticket.parked, ticket.wake = delay <= 0, anyio.Event()
                with anyio.move_on_after(None if ticket.parked else delay):
                    await ticket.wake.wait()
        except BaseException:
            self._leave(ticket)
            self._poke(self._clock())  # we may have been woken: pass the turn on
            raise
        self._grant(ticket, now)  # nothing is awaited from here on: the stamp is the send time
        self._poke(now)

    def retry_after(self, chat_id: int | None, seconds: float) -> None:
        """A 429 said to wait: for that chat, or (chat_id None) for everything."""
        until = self._clock() + seconds
        if chat_id is None:
            self._hold = max(self._hold, until)
        else:
            chat = self._chats.setdefault(chat_id, _Chat())
            chat.hold = max(chat.hold, until)  # sleepers just sleep again when they re-check

    def held(self, chat_id: int) -> bool:
        """Whether a 429 says to wait now, for everything or for `chat_id`: a courtesy call
        outside the gate ("typing…") is skipped then, rather than sent into the limit."""
        now, chat = self._clock(), self._chats.get(chat_id)
        return self._hold > now or (chat is not None and chat.hold > now)

    def waiting(self) -> int:
        """How many coroutines are waiting in `wait()` now (for status and tests)."""
        return sum(len(queue) for queue in self._queues.values())

    def _global_free(self, now: float) -> float:
        return max(self._hold, _window_free(self._sends, self._limits.global_per_second,
                                            self._limits.global_window, now))

    def _chat_free(self, chat_id: int, now: float) -> float:
        if (chat := self._chats.get(chat_id)) is None:
            return -math.inf
        limits, group = self._limits, -math.inf
        if chat_id < 0:
            group = _window_free(chat.sends, limits.group_per_minute, limits.group_window, now)
        return max(chat.hold, chat.last + limits.per_chat_interval, group)

    def _poke(self, now: float) -> _Ticket | None:
        """Wake the ticket that may go now; if none may, wake the parked to re-arm timers."""
        winner = None
        if self._global_free(now) <= now:
            winner = next((t for agent in self._turns for t in self._queues[agent]
                           if self._chat_free(t.chat_id, now) <= now), None)
        parked = (t for queue in self._queues.values() for t in queue if t.parked)
        for ticket in [winner] if winner else parked:
            ticket.wake.set()
        return winner

    def _grant(self, ticket: _Ticket, now: float) -> None:
        """Count a send, and move its agent to the back of the turn order."""
        self._leave(ticket)
        if ticket.agent in self._queues:
            self._turns.remove(ticket.agent)
            self._turns.append(ticket.agent)
        chat = self._chats.setdefault(ticket.chat_id, _Chat())
        chat.last = now
        if ticket.chat_id < 0:
            chat.sends.append(now)
        self._sends.append(now)
        if now >= self._sweep_at:  # forget idle chats now and then (_chat_free prunes sends)
            self._sweep_at = now + self._limits.group_window
            self._chats = {c: chat for c, chat in self._chats.items()
                           if self._chat_free(c, now) > now or chat.sends}

    def _leave(self, ticket: _Ticket) -> None:
        """Take a ticket out of its agent's queue; an agent left without one leaves the turns."""
        self._queues[ticket.agent].remove(ticket)
        if not self._queues[ticket.agent]:
            del self._queues[ticket.agent]
            self._turns.remove(ticket.agent)
