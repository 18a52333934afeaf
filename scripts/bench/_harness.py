"""Shared pieces of the hermesd benchmarks: a throw-away daemon, local-socket clients,
a floor server, and memory accounting over a process tree.

Why a module of its own: memory.py and latency.py must start daemons, talk to them and
clean up in exactly the same way, or their numbers would not be comparable.

Everything runs on Unix sockets in a private temp dir; nothing listens on a network
port.  Every process started here is killed again by pid (never by name) when its
context manager exits, including on Ctrl-C (SIGINT) and SIGTERM.
"""

from __future__ import annotations

import os
import pickle
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Self

import psutil

from hermesd import ctl, protocol


def _tool(name: str) -> str:
    """The console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


HERMESD, HERMESCTL = _tool("hermesd"), _tool("hermesctl")
MiB = 1024 * 1024

_LOCAL_IN = protocol.Codec(protocol.LocalFrame, json=True)
_LOCAL_OUT = protocol.Codec(protocol.LocalFrame, json=True)


def agent_id(i: int) -> str:
    return f"a{i:03d}"


def session_key(i: int) -> str:
    return f"local:bench-{i}"


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """A benchmark's entry point: exit with main()'s status, or with 130 after Ctrl-C, by
    which time every `with` block has killed what it started and removed its temp dir."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes and temp dirs cleaned up", file=sys.stderr, flush=True)
        sys.exit(130)


def guard(limit: float) -> None:
    """Make the run bounded and always cleaned up: SIGTERM, and SIGALRM after `limit`
    seconds, raise KeyboardInterrupt, so every `with` block below kills what it started."""

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGALRM:
            print(f"time limit of {limit:g} s reached; stopping", file=sys.stderr)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, limit)


def kill_processes(procs: list[psutil.Process]) -> None:
    """SIGKILL each process that is still the one we saw (psutil checks its start time,
    so a recycled pid is never hit), then reap our own children."""
    for proc in procs:
        try:
            if proc.is_running():
                proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=2)


# ----------------------------------------------------------------------------- daemon


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C, SIGTERM and the time limit (`guard`) wait until the block ends: a clean-up
    cut half-way by a second Ctrl-C would leave processes running."""
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Started:
    """A context manager over `start()` and `stop()`: entering starts (stopping again if
    starting fails half-way), leaving stops, whatever happened in between; a stop is
    never interrupted (`uninterrupted`)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            with uninterrupted():
                self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with uninterrupted():
            self.stop()


class Daemon(Started):
    """hermesd with `agents` echo agents (a000, a001, ...) in a fresh temp dir.

    Routes send `local:bench-<i>` to agent i (modulo the agent count) for i < max(agents,
    sessions), so clients can use the routes or pin with `agent=`.  `echo_delay` overrides
    that setting per agent id (used by the reload test); `settings` adds TOML lines to an
    agent's table.
    """

    def __init__(self, agents: int, echo_delay: dict[str, float] | None = None, sessions: int = 0,
                 settings: dict[str, list[str]] | None = None) -> None:
        self.agents = agents
        self.sessions = max(agents, sessions)  # routes for local:bench-0 .. -<sessions-1>
        self.echo_delay = dict(echo_delay or {})
        self.settings = dict(settings or {})
        self.dir = Path(tempfile.mkdtemp(prefix="hermesd-bench-"))
        self.config = self.dir / "hermesd.toml"
        self.control = self.dir / "run" / "control.sock"
        self.local = self.dir / "run" / "local.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0  # perf_counter() just before Popen
        self._seen: list[psutil.Process] = []

    def daemon_section(self) -> list[str]:
        """The `[daemon]` table every benchmark daemon starts its config with."""
        return ["[daemon]", f'state_dir = "{self.dir / "state"}"', f'runtime_dir = "{self.dir / "run"}"']

    def write_config(self) -> None:
        lines = [
            *self.daemon_section(),
            "[platforms.local]",
        ]
        for i in range(self.agents):
            lines += [f"[agents.{agent_id(i)}]", 'runtime = "echo"']
            if agent_id(i) in self.echo_delay:
                lines.append(f"echo_delay = {self.echo_delay[agent_id(i)]}")
            lines += self.settings.get(agent_id(i), [])
        for i in range(self.sessions):
            lines += ["[[routes]]", f'match = "{session_key(i)}"', f'agent = "{agent_id(i % self.agents)}"']
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        with open(self.dir / "hermesd.log", "wb") as log:
            self.spawned_at = time.perf_counter()
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the daemon in order.
            self.proc = subprocess.Popen([HERMESD, "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def control_request(self, request: protocol.ControlRequest, timeout: float = 10.0) -> Any:
        """One control-socket request, as hermesctl makes it but with a timeout."""
        connection = ctl.Connection(self.control, protocol.ControlReply, protocol.ControlRequest)
        try:
            connection.send(request)
            reply: protocol.ControlReply = connection.receive(timeout)
        finally:
            connection.sock.close()
        if not reply.ok:
            raise ctl.Failed(reply.error)
        return reply.data

    def status(self) -> dict[str, Any]:
        return self.control_request(protocol.StatusRequest())

    def wait_running(self, timeout: float = 60.0) -> dict[str, Any]:
        """Poll status until every agent is `running`; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError("hermesd exited:\n" + self.log_tail())
            try:
                status = self.status()
                if len(status["agents"]) == self.agents and all(
                    a["state"] == "running" for a in status["agents"]
                ):
                    return status
            except (ctl.Unreachable, ctl.Failed):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents not all running after {timeout}s")
            time.sleep(0.02)

    def pids(self) -> dict[str, int]:
        return {a["agent"]: a["pid"] for a in self.status()["agents"]}

    def tree(self) -> list[psutil.Process]:
        """The daemon, its zygote and its workers (all children of the daemon, which is
        their subreaper).  Remembered, so cleanup can kill stragglers by pid."""
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        procs = [root, *root.children(recursive=True)]
        self._seen += [p for p in procs if p not in self._seen]
        return procs

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "hermesd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (a graceful drain), SIGKILL after 5 s, then kill any leftover tree member."""
        if self.proc is not None:
            try:
                self.tree()
            except psutil.Error:
                pass
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            kill_processes(self._seen)
        shutil.rmtree(self.dir, ignore_errors=True)



# ----------------------------------------------------------------------------- clients


class LocalClient:
    """A blocking client of the local platform socket (what hermesctl send does, minus
    the process start), for sequential round trips."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        """Connect, retrying until `timeout`: the daemon may still be starting."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.002)
        self.reader = protocol.FrameReader()
        self.pending: list[Any] = []

    def send(self, key: str, text: str, agent: str | None = None) -> str:
        """Send one message; returns its client_id."""
        client_id = uuid.uuid4().hex
        message = protocol.LocalSend(session_key=key, text=text, client_id=client_id, agent=agent)
        self.sock.sendall(_LOCAL_OUT.encode(message))
        return client_id

    def receive(self, timeout: float = 30.0) -> Any:
        self.sock.settimeout(timeout)
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the local socket")
            self.pending = [_LOCAL_IN.decode(body) for body in self.reader.feed(data)]
        frame = self.pending.pop(0)
        if isinstance(frame, protocol.LocalError):
            raise RuntimeError(frame.error)
        if isinstance(frame, protocol.LocalDone) and frame.error:
            raise RuntimeError(f"message {frame.msg_id} failed: {frame.error}")
        return frame

    def until_done(self, count: int, timeout: float = 30.0) -> list[str]:
        """Read until `count` LocalDone frames arrived; returns the reply texts seen.
        Only for a connection whose session keys nobody else uses."""
        texts: list[str] = []
        deadline = time.monotonic() + timeout
        while count:
            frame = self.receive(max(0.001, deadline - time.monotonic()))
            if isinstance(frame, protocol.LocalReply):
                texts.append(frame.text)
            elif isinstance(frame, protocol.LocalDone):
                count -= 1
        return texts

    def request(self, key: str, text: str, agent: str | None = None, timeout: float = 30.0) -> list[str]:
        """Send and wait for this message's own LocalDone (matched by msg_id, so a late
        answer to someone else's message on the same session key is not mistaken for it)."""
        client_id = self.send(key, text, agent)
        deadline = time.monotonic() + timeout
        msg_id, texts = None, []
        while True:
            frame = self.receive(max(0.001, deadline - time.monotonic()))
            if isinstance(frame, protocol.LocalAccepted) and frame.client_id == client_id:
                msg_id = frame.msg_id
            elif isinstance(frame, protocol.LocalReply) and frame.msg_id == msg_id:
                texts.append(frame.text)
            elif isinstance(frame, protocol.LocalDone) and frame.msg_id == msg_id:
                return texts

    def round_trip(self, key: str, text: str, agent: str | None = None) -> float:
        """Seconds from send to this message's LocalDone."""
        start = time.perf_counter()
        self.request(key, text, agent)
        return time.perf_counter() - start

    def close(self) -> None:
        self.sock.close()


@dataclass
class LoadResult:
    messages: int
    seconds: float
    cpu_seconds: float  # the load process's own user+sys time over the window
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_share(self) -> float:
        """Fraction of one core the client used: near 1.0 would make it the bottleneck."""
        return self.cpu_seconds / self.seconds


def run_load(path: Path, sessions: int, duration: float, warmup: float = 0.5) -> LoadResult:
    """Closed loop over `sessions` connections, one session key each (`local:bench-<i>`),
    one message in flight per session: the next one goes as soon as LocalDone arrives.

    One process, non-blocking sockets and a selector: per message it does one send,
    usually one recv and four small JSON codec calls, so it stays far from a full core
    (the result says how far).  Only messages finished inside the window after
    `warmup` count.
    """
    selector = selectors.DefaultSelector()
    conns: dict[int, tuple[socket.socket, protocol.FrameReader, str, list[float]]] = {}
    for i in range(sessions):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        sock.setblocking(False)
        conns[sock.fileno()] = (sock, protocol.FrameReader(), session_key(i), [0.0])
        selector.register(sock, selectors.EVENT_READ)

    def send(fd: int) -> None:
        sock, _reader, key, sent = conns[fd]
        sent[0] = time.perf_counter()
        message = protocol.LocalSend(session_key=key, text="ping", client_id=uuid.uuid4().hex)
        sock.sendall(_LOCAL_OUT.encode(message))

    for fd in conns:
        send(fd)
    started = time.perf_counter()
    window_start, window_end = started + warmup, started + warmup + duration
    cpu_start = 0.0
    counted = 0
    latencies: list[float] = []
    now = started
    while now < window_end:
        if cpu_start == 0.0 and now >= window_start:
            times = os.times()
            cpu_start = times.user + times.system
        for key, _events in selector.select(timeout=1.0):
            sock, reader, _session, sent = conns[key.fd]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed a load connection")
            for body in reader.feed(data):
                frame = _LOCAL_IN.decode(body)
                if isinstance(frame, protocol.LocalDone):
                    now = time.perf_counter()
                    if window_start <= now < window_end:
                        counted += 1
                        latencies.append(now - sent[0])
                    send(key.fd)
                elif isinstance(frame, protocol.LocalError):
                    raise RuntimeError(frame.error)
        now = time.perf_counter()
    times = os.times()
    for sock, *_ in conns.values():
        sock.close()
    return LoadResult(counted, duration, times.user + times.system - cpu_start, latencies)


def floor_server(path: Path) -> None:
    """The floor: one Python process answering LocalSend on a Unix stream socket with the
    three frames hermesd sends (accepted, reply, done), same framing and JSON codec, no
    daemon logic.  (A connected AF_UNIX stream is the same kernel object as a socketpair;
    listening lets the same clients measure both.)  Runs until killed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(256)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    readers: dict[int, protocol.FrameReader] = {}
    msg_id = 0
    while True:
        for key, _events in selector.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if sock is listener:
                conn, _ = listener.accept()
                readers[conn.fileno()] = protocol.FrameReader()
                selector.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(sock)
                del readers[sock.fileno()]
                sock.close()
                continue
            out = []
            for body in readers[sock.fileno()].feed(data):
                request = _LOCAL_IN.decode(body)
                msg_id += 1
                out += [
                    _LOCAL_OUT.encode(protocol.LocalAccepted(request.client_id, msg_id, "floor")),
                    _LOCAL_OUT.encode(protocol.LocalReply(msg_id=msg_id, session_key=request.session_key,
                                                          agent="floor", text="floor: " + request.text)),
                    _LOCAL_OUT.encode(protocol.LocalDone(msg_id)),
                ]
            try:
                sock.sendall(b"".join(out))
            except OSError:  # the client went away mid-answer (end of a load run)
                pass


class Forked:
    """Run a function in a forked child (the load generator, the floor server), so it has
    its own core and its CPU time is its own.  Killed by pid on exit."""

    def __init__(self, target: Any, *args: Any) -> None:
        self._read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                os.close(self._read)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up
                os.write(write, pickle.dumps(target(*args)))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(write)

    def result(self, timeout: float) -> Any:
        """Wait for the child's return value (pickled through a pipe)."""
        deadline = time.monotonic() + timeout
        chunks = []
        os.set_blocking(self._read, False)
        while True:
            try:
                chunk = os.read(self._read, 1 << 20)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("forked child did not finish") from None
                time.sleep(0.01)
                continue
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            raise RuntimeError("forked child failed (traceback above)")
        return pickle.loads(b"".join(chunks))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self._read)


# ----------------------------------------------------------------------------- memory


@dataclass
class Mem:
    pid: int
    title: str
    rss: int
    pss: int
    uss: int


def memory(procs: list[psutil.Process]) -> list[Mem]:
    """RSS, PSS and USS of each process (psutil reads /proc/<pid>/smaps_rollup or smaps).
    PSS is the number that adds up: shared pages are split among their sharers."""
    out = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
            title = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            continue
        out.append(Mem(proc.pid, title, info.rss, info.pss, info.uss))
    return out


def private_by_mapping(pid: int, top: int = 12) -> list[tuple[str, int]]:
    """Where a process's private (unshared) memory is: Private_Clean + Private_Dirty per
    mapping name from /proc/<pid>/smaps, largest first ("[anon]" = anonymous mappings,
    i.e. mostly the Python object heap; "[heap]" = brk, i.e. malloc)."""
    totals: dict[str, int] = {}
    name = "?"
    with open(f"/proc/{pid}/smaps") as file:
        for line in file:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and not head[0].endswith(":"):  # a mapping header
                name = head[5] if len(head) > 5 else "[anon]"
            elif head[0] in ("Private_Clean:", "Private_Dirty:"):
                totals[name] = totals.get(name, 0) + int(head[1]) * 1024
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


# ----------------------------------------------------------------------------- output


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50) * 1e3,
        "p99": percentile(values, 99) * 1e3,
        "max": max(values) * 1e3,
        "mean": statistics.fmean(values) * 1e3,
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=False)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU of `procs`; processes that are gone count as 0."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total
