"""One agent as the supervisor sees it: a small state machine you could draw on a card
(starting -> running -> stopping -> stopped, or backoff -> ... -> fatal), its process, and
the messages it owes answers for."""

from __future__ import annotations

import os
import signal
from collections import deque
from enum import StrEnum

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from hermesd import log, protocol


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FATAL = "fatal"


class Slot:
    """One agent: its desired and actual state, its process, and its unanswered messages."""

    def __init__(self, spec: protocol.WorkerSpec) -> None:
        self.spec = spec
        self.state = State.STOPPED
        self.wanted = False
        self.pid: int | None = None
        self.started_at: float | None = None  # time.time() of the last Hello
        self.landlock: int | None = None  # its Hello's Landlock ABI (0 = none)
        self.restarts = 0
        self.refused = 0  # messages turned away because the queue was full
        self.last_error = ""
        self.logged_error = ""  # the worker's own last error line, joined to its exit
        self.kill_reason = ""  # why we killed it, if we did
        self.oom_kills: int | None = None  # its cgroup's count before it; None: not in one
        self.failures: deque[float] = deque()  # monotonic times of recent failures
        self.inflight: dict[int, protocol.Deliver] = {}  # in arrival order
        self.reply_counts: dict[int, int] = {}  # per message in `inflight`, this process
        self.frames: MemoryObjectSendStream[protocol.ParentFrame] | None = None
        self.exited = anyio.Event()
        self.exit_status: int | None = None
        self.last_seen = 0.0
        self.task_done = anyio.Event()
        self.task_done.set()
        self.backoff: anyio.CancelScope | None = None

    @property
    def agent_id(self) -> str:
        return self.spec.agent_id

    def send(self, frame: protocol.ParentFrame) -> None:
        if self.frames is not None and self.state is State.RUNNING:
            self.frames.send_nowait(frame)

    def request_stop(self) -> None:
        """Send Stop if there is a process to send it to."""
        if self.frames is not None and self.state is not State.STOPPING:
            self.state = State.STOPPING
            self.frames.send_nowait(protocol.Stop())

    def kill(self, reason: str) -> None:
        if self.pid is not None and not self.exited.is_set():
            self.kill_reason = reason
            log.warning("worker_killed", agent=self.agent_id, pid=self.pid, reason=reason)
            os.kill(self.pid, signal.SIGKILL)
