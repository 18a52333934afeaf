"""Messages through the daemon: spool -> router -> supervisor on the way in, the workers'
frames -> outbox on the way out.

`Messages` is what platform adapters hand messages to (`Inbox`, `Directory`) and what the
supervisor reports worker frames to (`WorkerEvents`).  It holds no task of its own: replies
leave through `Deliveries`, and the daemon's lifecycle is `Service`'s.
"""

from __future__ import annotations

import time
from pathlib import Path

from hermesd import attachments, log, protocol
from hermesd.delivery import Deliveries, Finished
from hermesd.platforms import Adapter, agents
from hermesd.routing import Route, Router
from hermesd.slot import Slot
from hermesd.spool import Inbound, Incoming, Spool, SpoolUnavailable
from hermesd.supervisor import Supervisor

BUSY_NOTICE_EVERY = 10.0  # seconds: one "busy" reply per conversation in this time


class Messages:
    def __init__(self, spool: Spool, deliveries: Deliveries, adapters: dict[str, Adapter],
                 router: Router) -> None:
        self.spool = spool
        self.router = router  # replaced on reload
        self._deliveries = deliveries
        self._adapters = adapters
        self._supervisor: Supervisor  # set by bind()
        self._agent_platform: agents.AgentPlatform
        self._unstored: set[int] = set()  # messages with a reply the spool could not take
        self._busy_noticed: dict[tuple[str, str], float] = {}  # conversation -> monotonic time

    def bind(self, supervisor: Supervisor, agent_platform: agents.AgentPlatform) -> None:
        """The parts built after this one (the supervisor reports to it)."""
        self._supervisor, self._agent_platform = supervisor, agent_platform

    # ---------------------------------------------------------------- messages in (Inbox, Directory)

    def receive(self, message: Incoming) -> tuple[Inbound, Route, bool]:
        """Raises SpoolUnavailable when the message could not be stored (the adapter tells
        the sender, or leaves the update with the platform to fetch again)."""
        if self.spool.fault is not None:
            raise SpoolUnavailable(self.spool.fault)
        route = self._route(message)
        entry, new = self.spool.put_inbound(message, route.agent)
        if new:
            if route.agent is not None and self._supervisor.queue_full(route.agent):
                self._refuse_busy(entry, route.agent)
            else:
                self.dispatch(entry, route)
        return entry, route, new

    def _refuse_busy(self, entry: Inbound, agent: str) -> None:
        """Backpressure: an agent whose queue is full gets no more, so a stuck agent cannot
        make the daemon hold an unbounded backlog.  Nothing is dropped silently: the message
        is finished with the error (a local client gets it per message), and the
        conversation gets a "busy" reply, at most one per BUSY_NOTICE_EVERY so that a flood
        of refusals does not become a flood of replies."""
        slot = self._supervisor.slots[agent]
        slot.refused += 1
        text = (f"{agent} is busy ({len(slot.inflight)} messages waiting, agent {slot.state}); "
                "this message was not passed on. Please send it again later.")
        conversation = (entry.platform, entry.session_key)
        now = time.monotonic()
        if now - self._busy_noticed.get(conversation, -BUSY_NOTICE_EVERY) < BUSY_NOTICE_EVERY:
            log.debug("message_refused", agent=agent, session=entry.session_key,
                      msg_id=entry.msg_id, reason="queue full", notice="already given")
            if self.spool.finish(entry.msg_id, error=text):
                self._deliveries.enqueue(entry.platform, Finished(entry.msg_id, entry.session_key, text))
            return
        if len(self._busy_noticed) > 1000:  # forget notices old enough not to matter
            self._busy_noticed = {k: t for k, t in self._busy_noticed.items()
                                  if now - t < BUSY_NOTICE_EVERY}
        self._busy_noticed[conversation] = now
        log.warning("message_refused", agent=agent, session=entry.session_key,
                    msg_id=entry.msg_id, reason="queue full", queue=len(slot.inflight))
        reply = self.spool.put_reply(msg_id=entry.msg_id, seq=0, agent=agent, text=text)
        self.spool.finish(entry.msg_id, error="busy")
        if reply is not None:
            self._deliveries.enqueue(entry.platform, reply)

    def route(self, session_key: str) -> Route:
        return self.router.resolve(session_key)

    def workspace_of(self, agent: str) -> Path | None:
        slot = self._supervisor.slots.get(agent)
        return Path(slot.spec.workspace) if slot else None

    def file_roots(self, agent: str) -> list[Path]:
        """Where files `agent` sends may come from (empty once the agent is gone)."""
        slot = self._supervisor.slots.get(agent)
        return attachments.roots(slot.spec) if slot else []

    def _route(self, message: Incoming) -> Route:
        if message.agent is None:
            return self.router.resolve(message.session_key)
        if message.agent in self._supervisor.slots:
            return Route(message.agent, "chosen by sender")
        return Route(None, f"no agent {message.agent!r}")

    def dispatch(self, entry: Inbound, route: Route | None = None) -> None:
        """Hand a stored message to its agent (`route`, else where the routes say now)."""
        route = route or self._route(entry)
        if route.agent is None:
            log.warning("message_dropped", session=entry.session_key, msg_id=entry.msg_id,
                        reason=route.rule)
            if self.spool.finish(entry.msg_id, error=route.rule):
                self._deliveries.enqueue(entry.platform, Finished(entry.msg_id, entry.session_key, route.rule))
            return
        log.debug("message_routed", agent=route.agent, session=entry.session_key,
                  msg_id=entry.msg_id, rule=route.rule)
        self._supervisor.deliver(route.agent, protocol.Deliver(
            msg_id=entry.msg_id, platform=entry.platform, session_key=entry.session_key,
            text=entry.text, sender=entry.sender, depth=entry.depth,
        ))  # fmt: skip

    def on_request(self, slot: Slot, request: protocol.Inject | protocol.Ask) -> None:
        """A worker speaks unasked (cron) or asks another agent (send_to_agent)."""
        agent = slot.agent_id
        if isinstance(request, protocol.Inject):
            if not self.spool.has_conversation(request.platform, request.session_key, agent):
                log.warning("inject_refused", agent=agent, session=request.session_key,
                            reason="not a conversation of this agent")
                return
            try:
                self.receive(Incoming(
                    platform=request.platform, external_id=f"{agent}:{request.external_id}",
                    session_key=request.session_key, text=request.text, sender="cron",
                    agent=agent,
                ))  # fmt: skip
            except SpoolUnavailable as exc:
                log.error("inject_refused", agent=agent, session=request.session_key,
                          reason=str(exc))
            return
        refusal = agents.refusal(agent, slot.spec.can_message, request, self._supervisor.slots)
        if refusal:
            log.warning("ask_refused", agent=agent, to=request.to, reason=refusal)
            slot.send(protocol.Answer(request_id=request.request_id, error=refusal))
            return
        try:
            entry, _route, new = self.receive(Incoming(
                platform=agents.NAME, external_id=f"{agent}:{request.request_id}",
                session_key=f"agent:{agent}:{request.to}", text=request.text,
                sender=agents.sender(agent, request.request_id), agent=request.to,
                depth=request.depth,
            ))  # fmt: skip
        except SpoolUnavailable as exc:
            slot.send(protocol.Answer(request_id=request.request_id, error=str(exc)))
            return
        if not new:  # asked again after a restart: answer now if it was answered before
            try:
                self.spool.commit()  # the answer is read from the spool: on disk first
            except SpoolUnavailable:
                return  # lost with the grouped writes: the answer comes when it is redone
            self._agent_platform.answer_again(entry)

    def recover(self) -> None:
        """After a restart: redeliver what no worker finished, resend what nobody got."""
        pending = self.spool.pending()
        for entry in pending:
            self.dispatch(entry)
        undelivered = self.spool.undelivered()
        for reply in undelivered:
            self._deliveries.enqueue(reply.platform, reply)
        if pending or undelivered:
            log.info("spool_recovered", redelivered=len(pending), replies=len(undelivered))

    # ---------------------------------------------------------------- replies out

    def on_reply(self, slot: Slot, reply: protocol.Reply) -> None:
        text, files = reply.text, []
        for name in reply.files:
            try:
                files.append(attachments.check(slot.spec, name))
            except attachments.Refused as exc:
                log.warning("file_refused", agent=slot.agent_id, file=name, reason=str(exc))
                text += f"\n(file {name} not sent: {exc})"
        try:
            stored = self.spool.put_reply(msg_id=reply.msg_id, seq=reply.seq, agent=slot.agent_id,
                                          text=text, files=tuple(files))
        except SpoolUnavailable as exc:
            self._unstored.add(reply.msg_id)
            log.error("reply_not_stored", agent=slot.agent_id, msg_id=reply.msg_id, error=str(exc),
                      consequence="the message is delivered again once the spool takes writes")
            return
        if stored is not None:
            self._deliveries.enqueue(stored.platform, stored)

    def on_done(self, slot: Slot, message: protocol.Deliver, done: protocol.Done) -> None:
        if done.error:
            log.warning("turn_failed", agent=slot.agent_id, session=message.session_key,
                        msg_id=message.msg_id, error=done.error)
        if message.msg_id in self._unstored:  # a reply was lost on the way to the spool:
            if self.spool.fault is None:  # have the worker say it all again (its ledger has it)
                self._unstored.discard(message.msg_id)
                self._supervisor.deliver(slot.agent_id, message)
            return  # else it stays unfinished until `resume`
        try:
            acked = self.spool.finish(message.msg_id, done.error)
        except SpoolUnavailable:
            return  # unfinished in the spool: `resume` delivers it again
        if acked:
            self._deliveries.enqueue(message.platform, Finished(message.msg_id, message.session_key, done.error))

    def open_messages(self, platform: str, session_key: str) -> list[int]:
        return self.spool.open_messages(platform, session_key)

    def read_positions(self, platform: str) -> dict[str, int]:
        return self.spool.read_positions(platform)

    def advance(self, platform: str, place: str, position: int) -> None:
        self.spool.advance(platform, place, position)

    def retry(self, platform: str, session_key: str) -> None:
        self._deliveries.retry(platform, session_key)

    async def room(self, platform: str, session_key: str) -> None:
        await self._deliveries.room(platform, session_key)

    def on_typing(self, slot: Slot, typing: protocol.Typing) -> None:
        for message in slot.inflight.values():
            if message.session_key == typing.session_key:
                adapter = self._adapters.get(message.platform)
                if adapter is not None:
                    adapter.typing(typing.session_key)
                return

    def resume(self) -> None:
        """The spool takes writes again: record what went out meanwhile, then redeliver
        every message left unfinished (workers resend what they had already answered)."""
        try:
            self._deliveries.record_unrecorded()
            inflight = {msg_id for slot in self._supervisor.slots.values() for msg_id in slot.inflight}
            for entry in self.spool.pending():
                if entry.msg_id not in inflight:
                    self._unstored.discard(entry.msg_id)
                    self.dispatch(entry)
        except SpoolUnavailable:
            pass  # failed again: the next check retries
