"""A worker runtime that attacks its own parent (`runtime = "python:tests.fakes.hostile_runtime:make"`).

The message text names the attack.  Raw ones write bytes straight onto the worker's socket
to the daemon, found the way injected code would find it; the others abuse the ordinary
reply path.  It attacks once per message: a marker in the workspace makes the restarted
worker answer the redelivered message normally, so a test can see that nothing was lost.
Any other text gets `"<agent id>: <text>"`, like the echo runtime.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Callable

import anyio

from hermesd import protocol
from workers.runtimes.home import AgentHome, Say

FLOOD = 1000  # replies to one message, far past the supervisor's limit
HUGE = 200_000  # characters in one reply, past its limit yet well inside one frame

_TO_WORKER = protocol.Codec(protocol.ParentFrame)
_TO_PARENT = protocol.Codec(protocol.WorkerFrame)
_OVERFLOW = protocol.Codec(dict)

RAW: dict[str, Callable[[AgentHome, protocol.Deliver], bytes]] = {
    "oversized": lambda home, message: struct.pack(">I", 0xFFFFFFF0),  # announces 4 GiB
    "garbage": lambda home, message: struct.pack(">I", 5) + b"\xc1" * 5,  # not msgpack
    "wrong-type": lambda home, message: _TO_WORKER.encode(message),  # a parent's frame
    "impostor": lambda home, message: _TO_PARENT.encode(protocol.Hello("someone-else", os.getpid())),
    # a reply whose seq does not fit SQLite's 64-bit integers (msgpack carries up to 2**64 - 1)
    "overflow": lambda home, message: _OVERFLOW.encode(
        {"type": "Reply", "msg_id": message.msg_id, "seq": 2**64 - 1, "text": "x"}),
}


def make(home: AgentHome) -> HostileRuntime:
    return HostileRuntime(home)


class HostileRuntime:
    def __init__(self, home: AgentHome) -> None:
        self._home = home

    async def turn(self, message: protocol.Deliver) -> AsyncIterator[Say]:
        marker = self._home.workspace.root / f"attacked-{message.msg_id}"
        attack = message.text
        if marker.exists() or (attack not in RAW and attack not in ("flood", "huge")):
            yield Say(f"{self._home.spec.agent_id}: {message.text}")
            return
        marker.touch()
        if attack == "flood":
            for i in range(FLOOD):
                yield Say(f"flood {i}")
        elif attack == "huge":
            yield Say("x" * HUGE)
        else:
            with parent_socket() as sock:
                sock.sendall(RAW[attack](self._home, message))
        await anyio.sleep_forever()  # the parent kills us; never say Done


def parent_socket() -> socket.socket:
    """A duplicate of the worker's connection to the daemon: of its Unix stream sockets,
    the one whose peer is another process (the event loop's wake-up pair is its own)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        sock = socket.socket(fileno=os.dup(fd))
        if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[0] != os.getpid():
                return sock
        sock.close()
    raise RuntimeError("no socket to the parent found")
