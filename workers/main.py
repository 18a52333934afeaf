"""A worker process: set itself up, then serve the parent's frames until told to stop.

Entered from the zygote right after fork, never imported to do work in the daemon.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import anyio
import anyio._backends._asyncio  # noqa: F401  (anyio loads its backend lazily; the zygote

#                                     must load it so that every worker shares it)
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from setproctitle import setproctitle

from hermesd import protocol
from workers import landlock, llm, runtimes, sandbox
from workers.agent import Agent
from workers.bridge import Parent
from workers.cron import Scheduler
from workers.ledger import Ledger
from workers.runtimes.home import AgentHome
from workers.sessions import Sessions
from workers.statedb import StateDB
from workers.workspace import Workspace

CHECKPOINT_INTERVAL = 2.0  # seconds
_FROM_PARENT = protocol.Codec(protocol.ParentFrame)
_TO_PARENT = protocol.Codec(protocol.WorkerFrame)
_FROM_PARENT_ENCODE = protocol.Codec(protocol.ParentFrame)  # the warm-up plays the parent
_TO_PARENT_DECODE = protocol.Codec(protocol.WorkerFrame)
_CREDENTIALS = protocol.Codec(protocol.Credentials)
MAX_CREDENTIALS = 64 * 1024  # bytes: a key is a few dozen


def run(fd: int, spec: protocol.WorkerSpec, daemon_pid: int) -> NoReturn:
    """The worker's whole life; its exit status tells the supervisor how it ended."""
    code = 1
    try:
        os.setsid()
        sandbox.become(spec.run_as, Path(spec.workspace))
        sandbox.die_with(daemon_pid)
        confinement = landlock.confine(spec)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        setproctitle(f"hermesd: agent {spec.agent_id}")
        sock = socket.socket(fileno=fd)
        credentials = read_credentials(sock)
        llm.use_api_key(credentials.api_key, credentials.problem)
        code = anyio.run(_serve, sock, spec, confinement)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def read_credentials(sock: socket.socket) -> protocol.Credentials:
    """The first frame on the socket, which the parent wrote before this process existed
    (so it is waiting in the buffer: this blocking read returns at once)."""
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) != 4:
        raise ConnectionError("the parent closed the socket before sending credentials")
    (size,) = struct.unpack(">I", header)
    if size > MAX_CREDENTIALS:
        raise ValueError(f"credentials frame of {size} bytes")
    return _CREDENTIALS.decode(sock.recv(size, socket.MSG_WAITALL))


async def _serve(
    sock: socket.socket,
    spec: protocol.WorkerSpec,
    confinement: landlock.Confinement = landlock.NOT_APPLIED,
) -> int:
    stream = await anyio.abc.SocketStream.from_socket(sock)
    for warning in confinement.warnings():  # sent now, so the daemon logs it with our id
        await stream.send(_TO_PARENT.encode(warning))
    send, frames = anyio.create_memory_object_stream[protocol.WorkerFrame](math.inf)
    try:
        home = _make_home(spec, send.send_nowait)
        runtime = runtimes.load(home)
    except Exception as exc:  # tell the parent why, so `hermesctl status` can show it
        error = protocol.Log(level="error", event="worker_setup_failed",
                             fields={"error": f"{type(exc).__name__}: {exc}"})
        await stream.send(_TO_PARENT.encode(error))
        return 1
    agent = Agent(runtime, Ledger(home.state), send.send_nowait)
    send.send_nowait(protocol.Hello(spec.agent_id, os.getpid(), confinement.abi))
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_read_frames, stream, agent, home, send, task_group)
        task_group.start_soon(home.scheduler.run)
        task_group.start_soon(_checkpoints, home)
        await _write_frames(stream, frames)  # until Stop has drained and closed `send`
        task_group.cancel_scope.cancel()
    return 0


def _make_home(
    spec: protocol.WorkerSpec, send: Callable[[protocol.WorkerFrame], None]
) -> AgentHome:
    workspace = Workspace(Path(spec.workspace), spec.shared_paths)
    workspace.ensure()
    if not os.access(workspace.root, os.W_OK | os.X_OK):
        raise PermissionError(f"workspace {workspace.root} is not writable")
    state = StateDB(workspace.state_db)
    parent = Parent(send)
    return AgentHome(spec=spec, workspace=workspace, state=state, sessions=Sessions(state),
                     parent=parent, scheduler=Scheduler(state, parent), send=send)


async def _checkpoints(home: AgentHome) -> None:
    """state.db's WAL checkpoints fsync; in the event loop they would stall every turn.
    One that fails (a full or read-only disk) is logged once and tried again later: the
    WAL keeps every commit meanwhile."""
    failing = ""
    while True:
        await anyio.sleep(CHECKPOINT_INTERVAL)
        if not home.state.needs_checkpoint():
            continue
        try:
            await anyio.to_thread.run_sync(home.state.checkpoint)
            failing = ""
        except (sqlite3.Error, OSError) as exc:
            if str(exc) != failing:
                home.log("warning", "checkpoint_failed", error=str(exc))
            failing = str(exc)


async def _read_frames(
    stream: ByteStream,
    agent: Agent,
    home: AgentHome,
    send: MemoryObjectSendStream[protocol.WorkerFrame],
    task_group: TaskGroup,
) -> None:
    """Dispatch the parent's frames.  Keeps reading while a Stop drains, so heartbeats are
    still answered; end of stream means the parent is gone and nobody is left to answer."""
    reader = protocol.FrameReader()
    stopping = False
    while True:
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            task_group.cancel_scope.cancel()
            return
        for body in reader.feed(data):
            message = _FROM_PARENT.decode(body)
            if isinstance(message, protocol.Deliver):
                if not stopping:  # after Stop the parent redelivers to the next process
                    agent.deliver(message, task_group)
            elif isinstance(message, protocol.Answer):
                home.parent.answered(message)
            elif isinstance(message, protocol.Ping):
                send.send_nowait(protocol.Pong(message.seq, agent.stats()))
            elif not stopping:
                stopping = True
                task_group.start_soon(_drain, agent, send)


async def _drain(agent: Agent, send: MemoryObjectSendStream[protocol.WorkerFrame]) -> None:
    """Stop: let the turns in progress finish, then close the outgoing queue; the writer
    flushes what is left and the worker exits."""
    await agent.idle.wait()
    send.close()


async def _write_frames(
    stream: ByteStream, frames: MemoryObjectReceiveStream[protocol.WorkerFrame]
) -> None:
    """The only writer of the socket; sends everything queued so far in one write."""
    async with frames:
        async for frame in frames:
            batch = [_TO_PARENT.encode(frame)]
            while True:
                try:
                    batch.append(_TO_PARENT.encode(frames.receive_nowait()))
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            try:
                await stream.send(b"".join(batch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the parent is gone; the reader sees the end of stream too


def warm_up() -> None:
    """Run one complete worker life in the zygote, against itself, before any fork.

    Python specialises bytecode as it runs and fills caches lazily; doing that once here
    means the writes land in pages every worker shares, instead of in every worker's own
    copy of them.
    """
    import tempfile

    async def drive(parent: socket.socket, spec: protocol.WorkerSpec) -> None:
        stream = await anyio.abc.SocketStream.from_socket(parent)
        frames = [protocol.Deliver(msg_id=1, platform="local", session_key="local:warm", text="hi"),
                  protocol.Ping(1), protocol.Stop()]
        await stream.send(b"".join(_FROM_PARENT_ENCODE.encode(f) for f in frames))
        reader = protocol.FrameReader()
        with anyio.move_on_after(5):
            while True:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    break
                for body in reader.feed(data):
                    _TO_PARENT_DECODE.decode(body)

    async def both(parent: socket.socket, child: socket.socket, spec: protocol.WorkerSpec) -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(drive, parent, spec)
            await _serve(child, spec)
            child.close()

    with tempfile.TemporaryDirectory(prefix="hermesd-warm-") as workspace:
        spec = protocol.WorkerSpec(agent_id="warm-up", runtime="echo", workspace=workspace)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with parent:
            anyio.run(both, parent, child, spec)
    try:
        llm.warm_up()
    except Exception as exc:  # an optimisation only: workers just share less memory
        print(f"hermesd: zygote warm-up of the LLM client skipped: {exc}", file=sys.stderr)
