"""One agent inside its worker: turns run in order per session key, concurrently across
keys, and each message is answered once however often it is delivered."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from hermesd.protocol import Deliver, Done, Log, Reply, Stats, Typing, WorkerFrame
from workers.ledger import Ledger
from workers.runtimes import Runtime
from workers.runtimes.home import Say


class Agent:
    def __init__(
        self, runtime: Runtime, ledger: Ledger, send: Callable[[WorkerFrame], None]
    ) -> None:
        self._runtime = runtime
        self._ledger = ledger
        self._send = send
        self._queues: dict[str, deque[Deliver]] = {}
        self._turns = 0
        self.idle = anyio.Event()
        self.idle.set()

    def stats(self) -> Stats:
        return Stats(turns=self._turns, active_sessions=len(self._queues))

    def deliver(self, message: Deliver, task_group: TaskGroup) -> None:
        """Queue behind the session's earlier messages; a session with no queue gets a
        drain task that lives until its queue is empty (no idle task per session).  A message
        the runtime says jumps the queue (hermes' /stop) gets a queue of its own, so it is
        answered while the session's turn runs."""
        key = message.session_key
        jumps_queue = getattr(self._runtime, "jumps_queue", None)
        if jumps_queue is not None and jumps_queue(message):
            key = f"{key}\0{message.msg_id}"
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(message)
            return
        self._queues[key] = deque([message])
        if self.idle.is_set():
            self.idle = anyio.Event()
        task_group.start_soon(self._drain, key)

    async def _drain(self, session_key: str) -> None:
        queue = self._queues[session_key]
        while queue:
            await self._answer(queue[0])
            queue.popleft()
        del self._queues[session_key]
        if not self._queues:
            self.idle.set()

    async def _answer(self, message: Deliver) -> None:
        stored = self._ledger.replies_of(message.msg_id)
        if stored is not None:  # a redelivery: say the same again, run nothing
            self._send_replies(message, stored)
            self._send(Done(msg_id=message.msg_id))
            return
        self._send(Typing(message.session_key))
        replies: list[Say] = []
        error = None
        try:
            async for say in self._runtime.turn(message):
                self._send_replies(message, [say], first_seq=len(replies))
                replies.append(say)
        except Exception as exc:  # a failed turn must not take the other sessions down
            error = f"{type(exc).__name__}: {exc}"
            self._send(Log(level="error", event="turn_failed", session_key=message.session_key,
                           fields={"msg_id": str(message.msg_id), "error": error}))
        self._turns += 1
        try:
            self._ledger.record(message.msg_id, replies)
        except sqlite3.Error as exc:  # full disk: answered, but a redelivery would run it again
            self._send(Log(level="error", event="ledger_not_written", session_key=message.session_key,
                           fields={"msg_id": str(message.msg_id), "error": str(exc)}))
        self._send(Done(msg_id=message.msg_id, error=error))

    def _send_replies(self, message: Deliver, replies: list[Say], first_seq: int = 0) -> None:
        for seq, say in enumerate(replies, first_seq):
            self._send(Reply(msg_id=message.msg_id, seq=seq, text=say.text, files=say.files))
