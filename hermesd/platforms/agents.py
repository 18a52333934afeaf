"""The agent platform: agents talking to agents (the send_to_agent tool).

An `Ask` from agent A to agent B becomes an ordinary spooled message on this platform, in
session `agent:A:B`, pinned to B; so it is durable, ordered and answered once like any
other.  B's replies are collected here, and when the message is finished A gets them as
one `Answer`.  Who asked, and under which request id, rides in the message's sender field.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from hermesd import protocol
from hermesd.slot import Slot
from hermesd.spool import Inbound, Outgoing, Spool
from hermesd.supervisor import Supervisor

NAME = "agent"
MAX_DEPTH = 3  # A asks B asks C asks D, and no further: bounds loops between agents


def sender(agent: str, request_id: str) -> str:
    return f"{agent}#{request_id}"


def refusal(
    agent: str, allowed: tuple[str, ...], ask: protocol.Ask, slots: dict[str, Slot]
) -> str | None:
    """Why `agent` may not ask, or None."""
    if ask.to not in allowed:
        return f"{agent} may not message {ask.to} (not in can_message)"
    if ask.to not in slots:
        return f"no agent {ask.to!r}"
    if ask.depth > MAX_DEPTH:
        return f"too many agent-to-agent hops (more than {MAX_DEPTH})"
    return None


class AgentPlatform:
    name = NAME

    def __init__(self, supervisor: Supervisor, spool: Spool) -> None:
        self._supervisor = supervisor
        self._spool = spool

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # nothing to listen to: messages come from workers

    def close_intake(self) -> None:
        pass

    def typing(self, session_key: str) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"state": "ready"}

    async def deliver(self, reply: Outgoing) -> bool:
        return True  # collected from the spool when the message is finished

    async def finished(self, msg_id: int, session_key: str, error: str | None) -> None:
        entry = self._spool.get(msg_id)
        if entry is not None:
            self._answer(entry, error)

    def answer_again(self, entry: Inbound) -> None:
        """The asker re-ran its turn after a restart and asked again."""
        if entry.msg_id not in self._spool.open_messages(NAME, entry.session_key):
            self._answer(entry, None)

    def _answer(self, entry: Inbound, error: str | None) -> None:
        asker, _, request_id = entry.sender.partition("#")
        slot = self._supervisor.slots.get(asker)
        if slot is None:
            return  # the asker was removed; nobody is waiting
        text = "\n\n".join(self._spool.replies_of(entry.msg_id))
        slot.send(protocol.Answer(request_id=request_id, text=text, error=error))
