"""What the control and local sockets share: a listener only trusted users can reach, and
a connection that speaks length-prefixed JSON frames."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from hermesd import log, protocol

_PEERCRED = struct.Struct("3i")
SEND_TIMEOUT = 2.0


async def listen(path: Path) -> SocketListener:
    """Bind `path` as a 0660 socket (a stale one from a dead daemon is replaced: the caller
    holds the runtime-dir lock, so no live daemon owns it)."""
    path.unlink(missing_ok=True)
    old_umask = os.umask(0o117)
    try:
        listener = await anyio.create_unix_listener(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    return listener


async def serve(
    listener: SocketListener, handler: Callable[[SocketStream], Awaitable[None]], name: str
) -> None:
    """Serve each connection in its own task.  A failure inside one connection is logged
    and ends that connection only: it must never end the listener, let alone the daemon."""

    async def guarded(stream: SocketStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:
            log.error("connection_failed", socket=name, error=f"{type(exc).__name__}: {exc}")

    async with listener:
        await listener.serve(guarded)


def peer_refusal(stream: SocketStream) -> str | None:
    """Why this peer may not talk to us, or None.  Allowed: root, our own uid, and members
    of our group (the file mode already says so; SO_PEERCRED makes it hold even if the
    socket file's mode or owner is changed) -- unless it descends from this daemon: an
    agent worker or anything a worker started.  Workers run with our uid when no
    `[daemon] user` is set, but must not stop other agents or talk to them behind the
    router.  Ancestry cannot be shed: the daemon is a child subreaper, so a process that
    leaves its session and is orphaned (setsid, double fork) is reparented to the daemon."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    try:
        if descends_from(pid, os.getpid()):
            return "connections from agent workers are not accepted"
    except OSError:
        return f"peer process {pid} is gone"
    our_gid = os.getgid()
    if uid in (0, os.getuid()) or gid == our_gid:
        return None
    try:
        user = pwd.getpwuid(uid).pw_name
        if our_gid in os.getgrouplist(user, gid) or user in grp.getgrgid(our_gid).gr_mem:
            return None
    except KeyError:
        pass
    return f"uid {uid} is not root, uid {os.getuid()} or in group {our_gid}"


MAX_DEPTH = 256
"""Parents looked at; far deeper than any real process tree."""


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is a descendant of `ancestor` (its parents, read from /proc).
    Raises OSError when a process of the chain is gone."""
    for _ in range(MAX_DEPTH):
        with open(f"/proc/{pid}/stat", "rb") as stat:
            pid = int(stat.read().rpartition(b")")[2].split()[1])  # after the name: state, ppid
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


class FramedConnection:
    """One client connection: JSON frames in, JSON frames out, one writer at a time."""

    def __init__(self, stream: SocketStream, incoming: Any, outgoing: Any,
                 max_frame: int = 1024 * 1024) -> None:
        self.stream = stream
        self._in = protocol.Codec(incoming, json=True)
        self._out = protocol.Codec(outgoing, json=True)
        self._reader = protocol.FrameReader(max_frame=max_frame)
        self._pending: deque[Any] = deque()
        self._lock = anyio.Lock()
        self._raw: socket.socket = stream.extra(SocketAttribute.raw_socket)

    async def receive(self) -> Any:
        """The next frame, or None at end of stream.  Raises ProtocolError on garbage.

        One read can hold hundreds of frames; each is handed out after a checkpoint, so a
        client that floods the socket takes turns with every other task instead of
        holding the event loop until its whole read is processed."""
        if self._pending:
            await anyio.lowlevel.checkpoint()
        while not self._pending:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._reader.close()
                return None
            self._pending.extend(self._in.decode(body) for body in self._reader.feed(data))
        return self._pending.popleft()

    async def send(self, message: Any) -> bool:
        """False if the peer has gone.  A peer that stops reading is disconnected after
        SEND_TIMEOUT: one stuck client must not hold up what is sent to the others.

        Almost always the socket buffer has room: then one non-blocking send does it, with
        no lock and no timeout scope (they cost more than the send itself)."""
        data = self._out.encode(message)
        if self._lock.locked():  # another frame is being written: queue behind it
            async with self._lock:
                return await self._send_rest(data)
        try:
            sent = self._raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent == len(data):
            return True
        self._lock.acquire_nowait()  # no await since the check: no frame can interleave
        try:
            return await self._send_rest(data[sent:])
        finally:
            self._lock.release()

    async def _send_rest(self, data: bytes) -> bool:
        with anyio.move_on_after(SEND_TIMEOUT):
            try:
                await self.stream.send(data)
                return True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return False
        await self.stream.aclose()  # a half-written frame: the stream is unusable
        return False

    async def refuse(self, answer: Any) -> None:
        """Answer a peer we will not serve.  Its first request is read first: closing a
        Unix socket with unread data resets the connection, and the peer would see a reset
        instead of the reason."""
        with anyio.move_on_after(2):
            try:
                await self.receive()
            except protocol.ProtocolError:
                pass
        await self.send(answer)
