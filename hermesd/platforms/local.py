"""The local platform: a Unix socket for `hermesctl send` / `hermesctl chat` and scripts.

A connection attaches to session keys; replies for a key go to every connection attached
to it.  A reply nobody is attached for stays in the outbox until someone attaches, so a
message sent before a restart is answered to whoever reconnects to its conversation.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import anyio
from anyio.abc import SocketStream, TaskStatus

from hermesd import log, protocol, unixsock
from hermesd.platforms import Inbox
from hermesd.spool import Incoming, Outgoing, SpoolUnavailable

NAME = "local"


class LocalPlatform:
    name = NAME

    def __init__(self, path: Path, inbox: Inbox) -> None:
        self.path = path
        self._inbox = inbox
        self._attached: defaultdict[str, set[unixsock.FramedConnection]] = defaultdict(set)
        self._intake_open = True

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await unixsock.listen(self.path)
        task_status.started()
        log.info("local_listening", socket=str(self.path))
        try:
            await unixsock.serve(listener, self._connection, "local")
        finally:  # stopped: by a reload that changes or removes [platforms.local], or at exit
            self.path.unlink(missing_ok=True)

    def close_intake(self) -> None:
        self._intake_open = False

    def typing(self, session_key: str) -> None:
        pass  # a terminal chat needs no indicator

    def status(self) -> dict[str, object]:
        return {"state": "listening" if self._intake_open else "closed", "socket": str(self.path),
                "clients": len({c for conns in self._attached.values() for c in conns})}

    async def deliver(self, reply: Outgoing) -> bool:
        frame = protocol.LocalReply(msg_id=reply.msg_id, seq=reply.seq, session_key=reply.session_key,
                                    agent=reply.agent, text=reply.text, files=list(reply.files))
        return await self._broadcast(reply.session_key, frame)

    async def finished(self, msg_id: int, session_key: str, error: str | None) -> None:
        await self._broadcast(session_key, protocol.LocalDone(msg_id, error))

    async def _broadcast(self, session_key: str, frame: object) -> bool:
        delivered = False
        for connection in list(self._attached.get(session_key, ())):
            delivered = await connection.send(frame) or delivered
        return delivered

    async def _connection(self, stream: SocketStream) -> None:
        connection = unixsock.FramedConnection(stream, protocol.LocalFrame, protocol.LocalFrame)
        keys: set[str] = set()
        async with stream:
            refusal = unixsock.peer_refusal(stream)
            if refusal:
                log.warning("local_refused", reason=refusal)
                await connection.refuse(protocol.LocalError(f"permission denied: {refusal}"))
                return
            try:
                while (request := await connection.receive()) is not None:
                    await self._handle(connection, request, keys)
            except protocol.ProtocolError as exc:
                await connection.send(protocol.LocalError(str(exc)))
            finally:
                for key in keys:
                    self._attached[key].discard(connection)
                    if not self._attached[key]:
                        del self._attached[key]

    async def _handle(
        self, connection: unixsock.FramedConnection, request: object, keys: set[str]
    ) -> None:
        if isinstance(request, protocol.LocalAttach):
            await self._attach(connection, request.session_key, keys)
        elif isinstance(request, protocol.LocalSend):
            if not self._intake_open:
                await connection.send(protocol.LocalError("hermesd is shutting down"))
                return
            await self._attach(connection, request.session_key, keys, announce=False)
            try:
                entry, route, _new = self._inbox.receive(Incoming(
                    platform=NAME, external_id=request.client_id, session_key=request.session_key,
                    text=request.text, sender="local", agent=request.agent,
                ))  # fmt: skip
            except SpoolUnavailable as exc:
                await connection.send(protocol.LocalError(f"not accepted, send it again later: {exc}"))
                return
            await connection.send(protocol.LocalAccepted(request.client_id, entry.msg_id, route.agent))
            await self._inbox.room(NAME, request.session_key)  # read no more until it drains
        else:
            await connection.send(protocol.LocalError(f"unexpected {type(request).__name__}"))

    async def _attach(
        self,
        connection: unixsock.FramedConnection,
        session_key: str,
        keys: set[str],
        announce: bool = True,
    ) -> None:
        """Subscribe, then have replies that were waiting for this conversation resent."""
        if session_key in keys:
            return
        keys.add(session_key)
        self._attached[session_key].add(connection)
        if announce:
            pending = self._inbox.open_messages(NAME, session_key)
            await connection.send(protocol.LocalAttached(session_key, pending))
        self._inbox.retry(NAME, session_key)
