"""Keeps one worker process per agent alive, and carries messages to and from it.

Each agent is a `Slot` (hermesd/slot.py).  A slot that should run
has exactly one `_supervise` task in the supervisor's task group; that task spawns the
process, owns its socket, and decides what happens when it exits.  Exits are learnt from
`waitpid` (the daemon reaps every child and calls `child_exited`), never guessed from a
closed socket.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import time
from typing import Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from hermesd import apikeys, log, protocol
from hermesd.cgroups import MemoryCgroups, kernel_kill_reason
from hermesd.config import DaemonConfig
from hermesd.slot import Slot, State
from hermesd.zygote import Zygote, ZygoteError

_TO_WORKER = protocol.Codec(protocol.ParentFrame)
_FROM_WORKER = protocol.Codec(protocol.WorkerFrame)
_CREDENTIALS = protocol.Codec(protocol.Credentials)

MAX_REPLIES_PER_MESSAGE = 100
"""A turn that says more than this to one message is a runaway or hostile worker: every
reply is spooled and sent to a chat, so the worker is killed instead."""
MAX_REPLY_CHARS = 100_000
"""Longest reply text accepted (about 25 Telegram messages); longer is killed like a flood."""


class Misbehaving(Exception):
    """Well-formed frames that no honest worker sends; the worker must be killed."""


class WorkerEvents(Protocol):
    """What the supervisor reports to the daemon; it decides nothing about messages itself."""

    def on_reply(self, slot: Slot, reply: protocol.Reply) -> None: ...

    def on_done(self, slot: Slot, message: protocol.Deliver, done: protocol.Done) -> None: ...

    def on_request(self, slot: Slot, request: protocol.Inject | protocol.Ask) -> None: ...

    def on_typing(self, slot: Slot, typing: protocol.Typing) -> None: ...


class Supervisor:
    """Spawns, watches and replaces workers; routes frames between them and the daemon."""

    def __init__(
        self,
        zygote: Zygote,
        settings: DaemonConfig,
        events: WorkerEvents,
        cgroups: MemoryCgroups | None = None,
    ) -> None:
        self.zygote = zygote
        self.cgroups = cgroups  # None: memory_max is enforced by the RSS watchdog
        self.settings = settings
        self.slots: dict[str, Slot] = {}
        self._events = events
        self._by_pid: dict[int, Slot] = {}
        self._early_exits: dict[int, int] = {}
        self._task_group: TaskGroup | None = None

    async def run(self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own every agent task; returns when cancelled (after `stop_all`)."""
        async with anyio.create_task_group() as self._task_group:
            task_status.started()
            await anyio.sleep_forever()

    # ---------------------------------------------------------------- lifecycle verbs

    def add(self, spec: protocol.WorkerSpec) -> Slot:
        slot = self.slots[spec.agent_id] = Slot(spec)
        return slot

    def start(self, agent_id: str) -> None:
        slot = self.slots[agent_id]
        slot.wanted = True
        slot.failures.clear()
        if slot.task_done.is_set():
            slot.state = State.STARTING
            slot.task_done = anyio.Event()
            assert self._task_group is not None
            self._task_group.start_soon(self._supervise, slot, name=f"agent {agent_id}")

    async def stop(self, agent_id: str) -> None:
        """Ask the worker to finish its turns and exit; kill it after `stop_timeout`.
        A worker still being forked is asked as soon as it exists (see `_run_once`)."""
        slot = self.slots[agent_id]
        slot.wanted = False
        if slot.backoff is not None:
            slot.backoff.cancel()
        slot.request_stop()
        with anyio.move_on_after(self.settings.stop_timeout):
            await slot.task_done.wait()
        slot.kill(f"did not stop within {self.settings.stop_timeout}s")
        await slot.task_done.wait()
        slot.state = State.STOPPED

    def stop_now(self) -> None:
        """Kill every worker without waiting for its turns (a second SIGTERM)."""
        for slot in self.slots.values():
            slot.wanted = False
            slot.kill("daemon stop forced")

    async def restart(self, agent_id: str) -> None:
        await self.stop(agent_id)
        self.start(agent_id)

    async def remove(self, agent_id: str) -> Slot:
        await self.stop(agent_id)
        if self.cgroups is not None:
            self.cgroups.remove(agent_id)
        return self.slots.pop(agent_id)

    async def replace(self, spec: protocol.WorkerSpec) -> None:
        """Restart an agent with a new spec; its unanswered messages go to the new process."""
        slot = self.slots[spec.agent_id]
        await self.stop(spec.agent_id)
        slot.spec = spec
        self.start(spec.agent_id)

    def queue_full(self, agent_id: str) -> bool:
        slot = self.slots[agent_id]
        return len(slot.inflight) >= slot.spec.max_queue

    def deliver(self, agent_id: str, message: protocol.Deliver) -> None:
        slot = self.slots[agent_id]
        slot.inflight[message.msg_id] = message
        slot.send(message)

    def child_exited(self, pid: int, status: int) -> None:
        """Called by the daemon for every reaped child."""
        slot = self._by_pid.pop(pid, None)
        if slot is None:
            self._early_exits[pid] = status  # reaped before the zygote told us its pid
            return
        slot.exit_status = status
        slot.exited.set()

    # ---------------------------------------------------------------- one agent's life

    async def _supervise(self, slot: Slot) -> None:
        try:
            while slot.wanted:
                started = time.monotonic()
                await self._run_once(slot)
                if not slot.wanted:
                    break
                delay = self._record_failure(slot, time.monotonic() - started)
                if delay is None:
                    slot.state = State.FATAL
                    log.error("agent_fatal", agent=slot.agent_id, failures=len(slot.failures),
                              window=self.settings.fatal_window, error=slot.last_error)
                    return
                slot.restarts += 1
                if delay:
                    slot.state = State.BACKOFF
                    log.info("agent_backoff", agent=slot.agent_id, delay=f"{delay:.3f}")
                    slot.backoff = anyio.CancelScope(deadline=anyio.current_time() + delay)
                    with slot.backoff:  # cancelled early by stop()
                        await anyio.sleep_forever()
                    slot.backoff = None
            slot.state = State.STOPPED
        finally:
            slot.task_done.set()

    async def _run_once(self, slot: Slot) -> None:
        slot.state = State.STARTING
        slot.exited = anyio.Event()
        slot.exit_status = None
        slot.reply_counts.clear()
        limited = self.cgroups is not None and self.cgroups.prepare(slot.agent_id, slot.spec.memory_max)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        key = apikeys.resolve(slot.spec.llm)
        ours.sendall(_CREDENTIALS.encode(protocol.Credentials(key.value, key.problem)))  # fits the empty buffer
        try:
            try:
                slot.pid = await self.zygote.spawn(slot.spec, theirs)
            except ZygoteError as exc:
                slot.last_error = f"spawn failed: {exc}"
                log.error("spawn_failed", agent=slot.agent_id, error=str(exc))
                return
            finally:
                theirs.close()
            if limited:
                self._confine(slot)
            self._by_pid[slot.pid] = slot
            if slot.pid in self._early_exits:
                self.child_exited(slot.pid, self._early_exits.pop(slot.pid))
            log.info("worker_spawned", agent=slot.agent_id, pid=slot.pid)
            stream = await anyio.abc.SocketStream.from_socket(ours)
            send, frames = anyio.create_memory_object_stream[protocol.ParentFrame](math.inf)
            slot.frames = send
            slot.last_seen = time.monotonic()
            if not slot.wanted:  # stop() was called while the zygote was forking
                slot.request_stop()
            read_all = anyio.Event()
            async with anyio.create_task_group() as connection, stream:
                connection.start_soon(self._read_frames, slot, stream, read_all)
                connection.start_soon(self._write_frames, stream, frames)
                connection.start_soon(self._heartbeat, slot)
                await slot.exited.wait()
                # Its last words (a Done, the error it exits for) may still be unread.  A
                # process it left behind could hold the socket open, so wait only a little.
                with anyio.move_on_after(0.5):
                    await read_all.wait()
                connection.cancel_scope.cancel()
        finally:
            slot.frames = None
            slot.started_at = slot.landlock = None
            self._by_pid.pop(slot.pid or -1, None)
            if slot.exit_status is not None:
                self._log_exit(slot)
            slot.pid = slot.oom_kills = None

    def _confine(self, slot: Slot) -> None:
        """Move the new worker into its agent's memory cgroup.  It ran in the daemon's
        leaf for the moment since its fork: a window of a few milliseconds in which it
        only sets itself up, allocating little and starting nothing."""
        assert self.cgroups is not None and slot.pid is not None
        before = self.cgroups.oom_kills(slot.agent_id)
        if self.cgroups.place(slot.agent_id, slot.pid):
            slot.oom_kills = before

    def _killed_by_kernel(self, slot: Slot, status: int) -> bool:
        """A SIGKILL while its cgroup counted a new OOM kill: it passed memory.max."""
        return (self.cgroups is not None and slot.oom_kills is not None
                and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
                and self.cgroups.killed_for_memory(slot.agent_id, slot.oom_kills))

    def _log_exit(self, slot: Slot) -> None:
        status = slot.exit_status or 0
        if not slot.kill_reason and self._killed_by_kernel(slot, status):
            slot.kill_reason = kernel_kill_reason(slot.spec.memory_max or 0)
            log.warning("worker_killed", agent=slot.agent_id, pid=slot.pid, reason=slot.kill_reason)
        if os.WIFSIGNALED(status):
            how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            how = f"exit status {os.WEXITSTATUS(status)}"
        if slot.kill_reason:
            slot.last_error = slot.kill_reason
        elif slot.wanted:
            slot.last_error = f"worker {how}" + (f": {slot.logged_error}" if slot.logged_error else "")
        slot.kill_reason = slot.logged_error = ""
        log.info("worker_exited", agent=slot.agent_id, pid=slot.pid, status=how)

    def _record_failure(self, slot: Slot, ran_for: float) -> float | None:
        """How long to wait before the next start, or None to give up (fatal).

        The first failure after a stable run restarts at once; repeated ones back off
        exponentially with jitter; `fatal_failures` within `fatal_window` is fatal.
        """
        settings = self.settings
        now = time.monotonic()
        if ran_for >= settings.backoff_reset_after:
            slot.failures.clear()
        slot.failures.append(now)
        while slot.failures and now - slot.failures[0] > settings.fatal_window:
            slot.failures.popleft()
        if len(slot.failures) >= settings.fatal_failures:
            return None
        if len(slot.failures) == 1:
            return 0.0
        delay = min(settings.backoff_max, settings.backoff_initial * 2 ** (len(slot.failures) - 2))
        return delay * random.uniform(0.5, 1.0)

    # ---------------------------------------------------------------- the connection

    async def _read_frames(
        self, slot: Slot, stream: anyio.abc.ByteStream, read_all: anyio.Event
    ) -> None:
        """Until end of stream; the exit itself is learnt from `child_exited`."""
        reader = protocol.FrameReader()
        try:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    reader.close()
                    return
                slot.last_seen = time.monotonic()
                for body in reader.feed(data):
                    self._handle(slot, _FROM_WORKER.decode(body))
        except protocol.ProtocolError as exc:
            slot.kill(f"protocol error: {exc}")
        except Misbehaving as exc:
            slot.kill(str(exc))
        finally:
            read_all.set()

    def _handle(self, slot: Slot, frame: protocol.WorkerFrame) -> None:
        if isinstance(frame, protocol.Reply):
            if frame.msg_id in slot.inflight:
                _check_reply(slot, frame)
                self._events.on_reply(slot, frame)
        elif isinstance(frame, protocol.Done):
            slot.reply_counts.pop(frame.msg_id, None)
            message = slot.inflight.pop(frame.msg_id, None)
            if message is not None:
                self._events.on_done(slot, message, frame)
        elif isinstance(frame, protocol.Hello):
            if frame.agent_id != slot.agent_id or frame.pid != slot.pid:
                raise protocol.ProtocolError(f"hello from {frame.agent_id} pid {frame.pid}")
            if slot.state is State.STOPPING:
                return  # told to stop before it was ready: no messages for it
            slot.state = State.RUNNING
            slot.started_at = time.time()
            slot.landlock = frame.landlock
            log.info("agent_running", agent=slot.agent_id, pid=slot.pid,
                     redelivering=len(slot.inflight))
            for message in slot.inflight.values():
                slot.send(message)
        elif isinstance(frame, protocol.Typing):
            self._events.on_typing(slot, frame)
        elif isinstance(frame, (protocol.Inject, protocol.Ask)):
            self._events.on_request(slot, frame)
        elif isinstance(frame, protocol.Log):
            log.emit(frame.level, frame.event, agent=slot.agent_id, session=frame.session_key,
                     **frame.fields)
            if frame.level == "error":
                slot.logged_error = f"{frame.event}: {frame.fields.get('error', '')}".rstrip(": ")
        # A Pong only proves liveness (last_seen is updated for every frame).

    @staticmethod
    async def _write_frames(
        stream: anyio.abc.ByteStream, frames: MemoryObjectReceiveStream[protocol.ParentFrame]
    ) -> None:
        async for frame in frames:
            batch = [_TO_WORKER.encode(frame)]
            while True:
                try:
                    batch.append(_TO_WORKER.encode(frames.receive_nowait()))
                except anyio.WouldBlock:
                    break
            try:
                await stream.send(b"".join(batch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # died before it was reaped: its messages wait for the next Hello

    async def _heartbeat(self, slot: Slot) -> None:
        """Ping, and watch: a worker that stops answering, or whose resident memory passes
        its `memory_max`, is killed (and then restarted like any failed worker).  A worker
        in a memory cgroup is left to the kernel: its limit counts what the worker itself
        charged (RSS also counts the pages it shares with the zygote), and two killers at
        one limit would report the same failure two ways."""
        interval, timeout = self.settings.heartbeat_interval, self.settings.heartbeat_timeout
        seq = 0
        while True:
            await anyio.sleep(interval)
            if time.monotonic() - slot.last_seen > timeout:
                slot.kill(f"no heartbeat for {timeout}s")
                return
            watched = slot.spec.memory_max if slot.oom_kills is None else None
            rss = _rss(slot.pid) if watched else 0
            if watched and rss > watched:
                slot.kill(f"memory_max exceeded: RSS {rss // 1024} KiB > {watched // 1024} KiB")
                return
            seq += 1
            if slot.frames is not None:  # also while starting or stopping: both can hang
                slot.frames.send_nowait(protocol.Ping(seq))


def _check_reply(slot: Slot, reply: protocol.Reply) -> None:
    """Refuse a reply flood or an oversized reply before any of it is spooled."""
    count = slot.reply_counts[reply.msg_id] = slot.reply_counts.get(reply.msg_id, 0) + 1
    if count > MAX_REPLIES_PER_MESSAGE:
        raise Misbehaving(f"reply flood: more than {MAX_REPLIES_PER_MESSAGE} replies "
                          f"to message {reply.msg_id}")
    if len(reply.text) > MAX_REPLY_CHARS:
        raise Misbehaving(f"reply too long: {len(reply.text)} characters to message "
                          f"{reply.msg_id} (limit {MAX_REPLY_CHARS})")


def _rss(pid: int | None) -> int:
    """Resident bytes of `pid` from /proc (cheaper than psutil for one number), 0 if gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE")
