"""Replies out: the only place they leave the daemon for a platform.

Each conversation with something to send has one task and a queue, so replies keep their
order within a conversation while a slow or rate-limited conversation holds up no other.
A reply is marked delivered in the spool once the adapter has it, and its message is acked
when that was its last reply (DESIGN §5).  A reply sent in parts records each part the
platform accepted, and a delivery cut short (a crash, a reload restarting its platform)
goes on from the next part: a user sees at most the part in flight twice.  The adapter is looked up for each reply, so a
platform restarted by a reload gets the replies from then on; while a platform is stopped
its replies stay in the outbox, and `resend` queues them once it runs again.
"""

from __future__ import annotations

from collections import deque
from functools import partial

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from hermesd import log
from hermesd.platforms import Adapter, Sending
from hermesd.spool import Outgoing, Spool, SpoolUnavailable

RETRY_MAX = 60.0  # seconds between attempts at an adapter that keeps failing
MAX_BACKLOG = 100  # items one conversation may have waiting before its sender is slowed


class Finished(msgspec.Struct, frozen=True):
    """Every reply of this message has been delivered: adapters may say so."""

    msg_id: int
    session_key: str
    error: str | None


class Resend(msgspec.Struct, frozen=True):
    """A stored reply queued again because a client came back for it; it may have been
    delivered meanwhile, which plain replies need not be checked for."""

    reply: Outgoing

    @property
    def session_key(self) -> str:
        return self.reply.session_key


Outbound = Outgoing | Finished | Resend


class Deliveries:
    def __init__(self, spool: Spool, adapters: dict[str, Adapter]) -> None:
        self._spool = spool
        self._adapters = adapters
        self._conversations: dict[tuple[str, str], deque[Outbound]] = {}
        self._unrecorded: list[Outgoing] = []  # delivered while the spool took no writes
        self._sending: dict[tuple[str, str], anyio.CancelScope] = {}  # a reply on its way out
        self._task_group: TaskGroup | None = None
        self._empty = anyio.Event()
        self._empty.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the conversation tasks until cancelled."""
        async with anyio.create_task_group() as self._task_group:
            task_status.started()
            await anyio.sleep_forever()

    def enqueue(self, platform: str, item: Outbound) -> None:
        """Queue behind the conversation's earlier replies."""
        if platform not in self._adapters:
            log.info("reply_held", platform=platform, session=item.session_key,
                     reason="platform not running: sent once it runs")
            return
        key = (platform, item.session_key)
        queue = self._conversations.get(key)
        if queue is not None:
            queue.append(item)
            return
        self._conversations[key] = deque([item])
        self._empty = anyio.Event()
        assert self._task_group is not None
        self._task_group.start_soon(self._deliver_conversation, key)

    def retry(self, platform: str, session_key: str) -> None:
        """Queue a conversation's undelivered replies again (a client came back for them)."""
        for reply in self._spool.undelivered(platform, session_key):
            self.enqueue(platform, Resend(reply))

    def resend(self, platform: str) -> None:
        """Queue every undelivered reply of a platform that (re)started."""
        for reply in self._spool.undelivered():
            if reply.platform == platform:
                self.enqueue(platform, Resend(reply))

    async def release(self, platform: str, grace: float) -> None:
        """The platform's adapter has left the dict (it is being stopped): give the replies
        on their way out up to `grace` seconds to get there, then cancel the rest.  They
        were not marked delivered, so they stay in the outbox for `resend`.  Returns once no
        conversation task sends to that adapter any more."""
        with anyio.move_on_after(grace):
            while any(key[0] == platform for key in self._sending):
                await anyio.sleep(0.01)
        for key, scope in list(self._sending.items()):
            if key[0] == platform:
                scope.cancel()
        while any(key[0] == platform for key in self._conversations):
            await anyio.sleep(0.01)

    async def room(self, platform: str, session_key: str) -> None:
        """Return once the conversation has fewer than MAX_BACKLOG items waiting."""
        queue = self._conversations.get((platform, session_key))
        while queue is not None and len(queue) >= MAX_BACKLOG:
            await anyio.sleep(0.01)

    async def flushed(self) -> None:
        """Return once nothing is waiting to be sent (for a graceful stop)."""
        await self._empty.wait()

    def record_unrecorded(self) -> None:
        """The spool takes writes again: mark what went out meanwhile as delivered."""
        while self._unrecorded:
            reply = self._unrecorded[0]
            if self._spool.delivered(reply):
                self.enqueue(reply.platform, Finished(reply.msg_id, reply.session_key, None))
            self._unrecorded.pop(0)

    async def _deliver_conversation(self, key: tuple[str, str]) -> None:
        queue = self._conversations[key]
        delay = 1.0
        try:
            while queue:
                adapter = self._adapters.get(key[0])
                if adapter is None:  # stopped by a reload: the outbox keeps the replies
                    log.info("reply_held", platform=key[0], session=key[1],
                             reason="platform stopped: sent once it runs")
                    return
                with anyio.CancelScope() as self._sending[key]:
                    try:
                        await self._deliver_item(adapter, queue[0])
                    except Exception as exc:  # an adapter's bug must not end the daemon or lose the reply
                        log.error("delivery_failed", platform=key[0], session=key[1],
                                  error=f"{type(exc).__name__}: {exc}", retry_in=f"{delay:.0f}")
                        await anyio.sleep(delay)
                        delay = min(delay * 2, RETRY_MAX)
                        continue
                    finally:
                        del self._sending[key]
                    queue.popleft()
                    delay = 1.0
        finally:
            del self._conversations[key]
            if not self._conversations:
                self._empty.set()

    def _parts_sent(self, reply: Outgoing, count: int) -> None:
        try:
            self._spool.parts_sent(reply, count)
        except SpoolUnavailable:
            pass  # the part went out all the same; only a crash before the reply is done resends it

    async def _deliver_item(self, adapter: Adapter, item: Outbound) -> None:
        try:
            self._spool.commit()  # what is sent below must be on disk first
        except SpoolUnavailable:
            pass  # the grouped writes were lost: the checks below see it
        if isinstance(item, Finished):
            # A failed write takes the grouped ones with it: then this "done" may no longer
            # be recorded, and the message, pending again, is redelivered by `resume`.
            if self._spool.rollbacks and not self._spool.acked(item.msg_id):
                return
            await adapter.finished(item.msg_id, item.session_key, item.error)
            return
        if isinstance(item, Resend):
            item = item.reply
        parts_sent = self._spool.progress(item)  # read now: an earlier attempt may have sent some
        if parts_sent is None:
            return  # delivered meanwhile (it was queued again, for a client that came back)
        if parts_sent:
            log.info("reply_resumed", platform=item.platform, session=item.session_key,
                     agent=item.agent, from_part=parts_sent + 1)
        sending = Sending(**msgspec.structs.asdict(item), parts_sent=parts_sent,
                          sent=partial(self._parts_sent, item))
        if not await adapter.deliver(sending):
            return  # nobody to take it now: it stays in the outbox
        try:
            acked = self._spool.delivered(item)
        except SpoolUnavailable:  # it went out; say so once the spool can record it
            self._unrecorded.append(item)
            return
        if acked:
            await adapter.finished(item.msg_id, item.session_key, None)
