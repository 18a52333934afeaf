"""Chaos: many messages through the real hermesd while its workers and the daemon itself are
killed with SIGKILL at random moments, then every reply accounted for.

One driver for tests/integration/test_chaos.py and scripts/bench/chaos.py, so the test's
claim and the benchmark's figures come from the same code.  What is counted (accepted,
lost, duplicated, resent, still open) is defined in the test's docstring; in short, the
daemon delivers each reply (msg_id, seq) at least once and a client drops a repeat, and no
accepted message may go unanswered or be answered by two different replies.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from hermesd import ctl, protocol
from tests.harness import Daemon, live

# echo_delay per agent: the slow ones have turns in flight when a kill lands.
AGENTS = {"c0": 0.0, "c1": 0.005, "c2": 0.02, "c3": 0.05}

# Restart killed workers at once and never give up on them: this run is about messages,
# not about the backoff policy (tests/integration/test_supervision.py covers that).
SUPERVISOR = """
heartbeat_interval = 0.5
heartbeat_timeout = 5.0
backoff_initial = 0.01
backoff_max = 0.05
backoff_reset_after = 1.0
fatal_failures = 100000
fatal_window = 1.0
stop_timeout = 3.0
"""

STRAGGLING = 0.5  # seconds the old zygote and workers get to die before hermesd restarts


@dataclass(frozen=True)
class Plan:
    messages: int = 2000
    clients: int = 6
    sessions: int = 2  # session keys per client, each pinned to one agent
    window: int = 4  # messages a client has sent and not yet seen answered
    rate: float = 100.0  # messages/s offered over all clients; 0 = as fast as answered
    worker_kill_every: float = 0.3  # mean seconds between worker kills; 0 = none
    parent_kill_every: float = 3.0  # mean seconds between daemon kills; 0 = none
    settle_timeout: float = 30.0  # after the last message was sent
    seed: int = 0


@dataclass
class Message:
    client_id: str
    session_key: str
    agent: str
    text: str
    msg_id: int | None = None
    other_msg_ids: set[int] = field(default_factory=set)
    replies: dict[int, list[str]] = field(default_factory=dict)  # seq -> texts, repeats kept

    @property
    def answered(self) -> bool:
        return bool(self.replies)

    @property
    def duplicated(self) -> bool:
        return (len(self.replies) > 1 or bool(self.other_msg_ids)
                or any(len(set(texts)) > 1 for texts in self.replies.values()))

    @property
    def resent(self) -> int:
        return sum(len(texts) - len(set(texts)) for texts in self.replies.values())

    @property
    def wrong(self) -> bool:
        return any(text != f"{self.agent}: {self.text}" for texts in self.replies.values() for text in texts)


class Replies:
    """Every client's messages by msg_id, so a reply lands on its message whichever
    connection it arrives on; a reply for an id nobody was given yet waits in `early`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_msg_id: dict[int, Message] = {}
        self.early: dict[int, list[tuple[int, str]]] = {}

    def accepted(self, message: Message, msg_id: int) -> None:
        with self._lock:
            if message.msg_id is None:
                message.msg_id = msg_id
                self.by_msg_id[msg_id] = message
                for seq, text in self.early.pop(msg_id, []):
                    message.replies.setdefault(seq, []).append(text)
            elif message.msg_id != msg_id:
                message.other_msg_ids.add(msg_id)

    def reply(self, frame: protocol.LocalReply) -> None:
        with self._lock:
            message = self.by_msg_id.get(frame.msg_id)
            if message is None:  # its LocalAccepted comes after the client sends it again
                self.early.setdefault(frame.msg_id, []).append((frame.seq, frame.text))
            else:
                message.replies.setdefault(frame.seq, []).append(frame.text)


class Client(threading.Thread):
    """One user with a few conversations, a window of messages in flight, and the
    discipline a client of an at-least-once service needs: on a dropped connection,
    reconnect, attach its session keys again, and resend what was not accepted."""

    def __init__(self, path: Path, messages: list[Message], replies: Replies, plan: Plan,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.path, self.messages, self.replies, self.plan, self.stop = path, messages, replies, plan, stop
        self.by_client_id = {m.client_id: m for m in messages}
        self.keys = sorted({m.session_key for m in messages})
        self.sent = 0  # messages[:sent] went out at least once
        self.unanswered: dict[str, Message] = {}  # sent, no reply seen yet
        self.interval = plan.clients / plan.rate if plan.rate else 0.0
        self.next_send = 0.0
        self.reconnects = 0
        self.errors: list[str] = []

    def finished(self) -> bool:
        return self.sent == len(self.messages) and not self.unanswered

    def run(self) -> None:
        while not self.finished() and not self.stop.is_set():
            try:
                connection = ctl.Connection(self.path, protocol.LocalFrame, protocol.LocalFrame)
            except ctl.Unreachable:  # the daemon is being restarted
                time.sleep(0.01)
                continue
            try:
                self._converse(connection)
            except ctl.Unreachable:
                self.reconnects += 1
            except Exception as exc:  # reported, never hidden: the run fails on it
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            finally:
                connection.sock.close()

    def _converse(self, connection: ctl.Connection) -> None:
        for key in self.keys:
            connection.send(protocol.LocalAttach(key))
        for message in self.unanswered.values():
            if message.msg_id is None:  # maybe stored before the drop: the same client_id
                self._send(connection, message)
        while not self.finished() and not self.stop.is_set():
            while (self.sent < len(self.messages) and len(self.unanswered) < self.plan.window
                   and time.monotonic() >= self.next_send):
                message = self.messages[self.sent]
                self.sent += 1
                self.unanswered[message.client_id] = message
                self.next_send = max(self.next_send + self.interval, time.monotonic() - 1.0)
                self._send(connection, message)
            try:
                self._handle(connection.receive(timeout=0.02))
            except TimeoutError:
                pass

    def _send(self, connection: ctl.Connection, message: Message) -> None:
        connection.send(protocol.LocalSend(session_key=message.session_key, text=message.text,
                                           client_id=message.client_id, agent=message.agent))

    def _handle(self, frame: Any) -> None:
        if isinstance(frame, protocol.LocalAccepted):
            message = self.by_client_id[frame.client_id]
            self.replies.accepted(message, frame.msg_id)
        elif isinstance(frame, protocol.LocalReply):
            self.replies.reply(frame)
        elif isinstance(frame, protocol.LocalDone) and frame.error:
            self.errors.append(f"message {frame.msg_id} failed: {frame.error}")
        elif isinstance(frame, protocol.LocalError):
            raise RuntimeError(frame.error)
        for client_id, message in list(self.unanswered.items()):
            if message.answered:
                del self.unanswered[client_id]


class Killer(threading.Thread):
    """SIGKILLs a random worker or the daemon at random moments while
    `faulting` is set, restarting a killed daemon on the same state dir; until `done`, it
    also restarts a daemon that exited by itself, and counts that as a failure."""

    def __init__(self, daemon: Daemon, plan: Plan, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.daemon, self.plan, self.rng = daemon, plan, rng
        self.faulting, self.done = threading.Event(), threading.Event()
        self.faulting.set()
        self.kills: Counter[str] = Counter()
        self.restarts = 0
        self.stragglers: list[psutil.Process] = []  # outlived their daemon by STRAGGLING s
        self.unexpected_exits = 0
        self.errors: list[str] = []

    def _next(self, every: float) -> float:
        """Uniform around the mean rather than exponential: a run of a given length gets
        about the same number of faults whatever the seed, so it is never a quiet one."""
        return time.monotonic() + self.rng.uniform(0.2, 1.8) * every if every else float("inf")

    def run(self) -> None:
        try:
            next_worker, next_parent = self._next(self.plan.worker_kill_every), self._next(self.plan.parent_kill_every)
            while not self.done.wait(0.005):
                if self.daemon.process is not None and self.daemon.process.poll() is not None:
                    self.unexpected_exits += 1
                    self._restart([])
                if not self.faulting.is_set():
                    continue
                now = time.monotonic()
                if now >= next_parent:
                    self._kill_parent()
                    next_parent = self._next(self.plan.parent_kill_every)
                elif now >= next_worker:
                    self._kill_worker()
                    next_worker = self._next(self.plan.worker_kill_every)
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _kill_worker(self) -> None:
        agent = self.rng.choice(sorted(AGENTS))
        try:
            status = _status(self.daemon.socket)
        except (ctl.Unreachable, ctl.Failed, TimeoutError):
            return  # the daemon is starting: no worker to kill yet
        info = next(a for a in status["agents"] if a["agent"] == agent)
        if info["state"] != "running" or not info["pid"]:
            return
        try:
            psutil.Process(info["pid"]).send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            return
        self.kills["worker, turn in flight" if info["queue"] else "worker, idle"] += 1

    def _kill_parent(self) -> None:
        tree = self.daemon.children()
        self.daemon.kill()
        self.kills["parent"] += 1
        self._restart(tree)

    def _restart(self, tree: list[psutil.Process]) -> None:
        """Start hermesd again on the same state dir once the old zygote and workers are
        gone (PDEATHSIG); clients reconnect as soon as its socket accepts.  A process that
        was still being set up when its daemon died has no PDEATHSIG yet: it notices within
        its own timeout, so rather than wait for it, it is checked at the end (`stragglers`)."""
        deadline = time.monotonic() + STRAGGLING
        while any(live(p.pid) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.stragglers += [p for p in tree if live(p.pid)]
        self.daemon.start(wait=False)
        self.restarts += 1

    def stragglers_left(self, timeout: float = 10.0) -> list[str]:
        """The stragglers still running after `timeout`: each is a process that outlived
        its daemon for good (DESIGN §6: a dead daemon takes its zygote and workers)."""
        deadline = time.monotonic() + timeout
        while any(live(p.pid) for p in self.stragglers) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f"{p.pid} {_title(p)}" for p in self.stragglers if live(p.pid)]


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "?"


def _status(control: Path) -> dict[str, Any]:
    connection = ctl.Connection(control, protocol.ControlReply, protocol.ControlRequest)
    try:
        connection.send(protocol.StatusRequest())
        reply: protocol.ControlReply = connection.receive(timeout=2.0)
    finally:
        connection.sock.close()
    if not reply.ok:
        raise ctl.Failed(reply.error)
    return reply.data


@dataclass
class Report:
    plan: Plan
    messages: list[Message]
    kills: Counter[str]
    restarts: int
    unexpected_exits: int
    reconnects: int
    still_open: int  # messages the spool still owes replies for, after settling
    stragglers: int  # processes that took more than STRAGGLING s to follow their daemon
    errors: list[str]
    drive_seconds: float  # from the first message to the last one sent
    settle_seconds: float  # from then until every client had all its answers

    @property
    def accepted(self) -> list[Message]:
        return [m for m in self.messages if m.msg_id is not None]

    @property
    def lost(self) -> int:
        return sum(not m.answered for m in self.accepted)

    @property
    def duplicated(self) -> int:
        return sum(m.duplicated for m in self.messages)

    @property
    def resent(self) -> int:
        return sum(m.resent for m in self.messages)

    @property
    def wrong(self) -> int:
        return sum(m.wrong for m in self.messages)

    @property
    def ok(self) -> bool:
        return (len(self.accepted) == len(self.messages) and not self.lost and not self.duplicated
                and not self.wrong and not self.still_open and not self.unexpected_exits and not self.errors)

    def summary(self) -> str:
        worker_kills = sum(n for kind, n in self.kills.items() if kind.startswith("worker"))
        seconds = self.drive_seconds + self.settle_seconds
        lines = [
            f"chaos seed {self.plan.seed}: {len(self.messages)} messages driven, "
            f"{len(self.accepted)} accepted, {sum(m.answered for m in self.messages)} answered, "
            f"{self.lost} lost, {self.duplicated} duplicated, {self.wrong} wrong, "
            f"{self.resent} resent after a restart (dropped by (msg_id, seq)), "
            f"{self.still_open} still open",
            f"faults: {worker_kills} worker kills ({self.kills['worker, turn in flight']} with a turn "
            f"in flight), {self.kills['parent']} daemon kills, {self.restarts} daemon restarts, "
            f"{self.unexpected_exits} unexpected daemon exits, {self.reconnects} client reconnects, "
            f"{self.stragglers} processes slow to follow a killed daemon",
            f"time: {self.drive_seconds:.1f} s driving, {self.settle_seconds:.2f} s to settle, "
            f"{len(self.accepted) / seconds:.0f} msg/s answered overall",
        ]
        lines += [f"error: {error}" for error in self.errors[:10]]
        return "\n".join(lines)


def configure(daemon: Daemon) -> None:
    daemon.write_config(
        "".join(f'[agents.{agent}]\nruntime = "echo"\necho_delay = {delay}\n' for agent, delay in AGENTS.items()),
        supervisor=SUPERVISOR,
    )


def plan_messages(plan: Plan) -> list[list[Message]]:
    """Each client's messages, its sessions taking turns; sessions spread over the agents."""
    agents = sorted(AGENTS)
    per_client: list[list[Message]] = [[] for _ in range(plan.clients)]
    for i in range(plan.messages):
        client = i % plan.clients
        session = (i // plan.clients) % plan.sessions
        number = client * plan.sessions + session
        per_client[client].append(Message(
            client_id=f"chaos-{plan.seed}-{i}", session_key=f"local:chaos-{number}",
            agent=agents[number % len(agents)], text=f"message {i}",
        ))  # fmt: skip
    return per_client


def run(daemon: Daemon, plan: Plan) -> Report:
    """Start hermesd in `daemon`'s directory, drive `plan` through it under faults, let it
    settle, and account for every message.  The daemon is left running (the caller stops it)."""
    configure(daemon)
    daemon.start()
    local_sock = daemon.runtime_dir / "local.sock"
    replies, stop = Replies(), threading.Event()
    clients = [Client(local_sock, messages, replies, plan, stop) for messages in plan_messages(plan)]
    killer = Killer(daemon, plan, random.Random(plan.seed))
    started = time.monotonic()
    killer.start()
    for client in clients:
        client.start()
    while killer.is_alive() and any(c.sent < len(c.messages) for c in clients if c.is_alive()):
        time.sleep(0.01)
    killer.faulting.clear()
    driven = time.monotonic()
    deadline = driven + plan.settle_timeout
    for client in clients:
        client.join(max(0.0, deadline - time.monotonic()))
    settled = time.monotonic()
    stop.set()
    for client in clients:
        client.join()
    still_open = _still_open(local_sock, [k for c in clients for k in c.keys], replies)
    killer.done.set()
    killer.join()
    errors = [f"outlived its daemon: {title}" for title in killer.stragglers_left()]
    return Report(
        plan=plan, messages=[m for c in clients for m in c.messages], kills=killer.kills,
        restarts=killer.restarts, unexpected_exits=killer.unexpected_exits,
        reconnects=sum(c.reconnects for c in clients), still_open=still_open,
        stragglers=len(killer.stragglers),
        errors=errors + killer.errors + [e for c in clients for e in c.errors],
        drive_seconds=driven - started, settle_seconds=settled - driven,
    )  # fmt: skip


def _still_open(path: Path, keys: list[str], replies: Replies, timeout: float = 5.0) -> int:
    """How many messages the spool still owes replies for, as a client attaching to every
    session sees it: none, once every reply is delivered and every message acked.  A reply
    resent on this connection lands on its message (and counts as resent)."""
    deadline = time.monotonic() + timeout
    while True:
        connection = ctl.Connection(path, protocol.LocalFrame, protocol.LocalFrame)
        try:
            pending: dict[str, list[int]] = {}
            for key in keys:
                connection.send(protocol.LocalAttach(key))
            while len(pending) < len(keys):
                frame = connection.receive(timeout=5.0)
                if isinstance(frame, protocol.LocalAttached):
                    pending[frame.session_key] = frame.pending
                elif isinstance(frame, protocol.LocalReply):
                    replies.reply(frame)
        finally:
            connection.sock.close()
        still_open = sum(len(ids) for ids in pending.values())
        if not still_open or time.monotonic() > deadline:
            return still_open
        time.sleep(0.1)
