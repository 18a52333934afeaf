"""The zygote: a pre-warmed process that forks agent workers on request.

The daemon starts it at start-up as a fresh interpreter (fork and exec), so it holds only
the worker code.  It imports that code once, freezes the GC (collected objects would
otherwise be written to, un-sharing their pages), and then each worker is a fork of it:
a new agent costs a few pages, not an interpreter.

Who reaps whom: the daemon is a child subreaper, and the zygote double-forks (zygote ->
short-lived intermediate -> worker).  The intermediate exits at once, so the worker is
reparented to the daemon, which reaps it and whose death kills it (PDEATHSIG).  The zygote
only ever waits for its own intermediates and never accumulates children.

Secrets: the zygote is exec'd, not a bare fork of the daemon, with only a few harmless
environment variables, so nothing the daemon read before (the configuration, bot tokens,
every agent's API key in its environment) is in its memory, and so in no worker's.  Each
worker gets its own agent's key alone, read by the daemon and carried by its spawn request.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Mapping

from hermesd import protocol

_REQUESTS = protocol.Codec(protocol.SpawnRequest)
_REPLIES = protocol.Codec(protocol.ZygoteFrame)
_PID = struct.Struct(">i")

WORKER_ENVIRONMENT = re.compile(
    r"PATH|HOME|TZ|TMPDIR|LANG|LANGUAGE|LC_[A-Z_]+|SSL_CERT_FILE|SSL_CERT_DIR"
    r"|(?i:(http|https|all|no)_proxy)"
)
"""What workers keep of the daemon's environment: locale, time zone, temp dir, and what
httpx reads to reach a provider (proxies; CA files for anything not using our context)."""


class ZygoteError(Exception):
    """The zygote is gone or refused to spawn; no worker can start."""


_BOOT = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); import hermesd.zygote as z; z.main()"
"""The zygote's first line: the daemon's import path exactly (so it runs the same code,
custom runtimes included), passed as an argument since PYTHONPATH is not kept."""


def start_zygote(preload_hermes: bool = False) -> tuple[int, socket.socket]:
    """Start the zygote; returns its pid and the daemon's end of the request channel.
    `preload_hermes`: import hermes-agent before any fork, for the agents whose runtime is
    "hermes" (it costs the zygote ~50 MiB, so only when the configuration has one; else the
    zygote does it before it forks the first hermes agent a reload adds).

    Only the channel is inherited: every other descriptor Python opens is close-on-exec
    (the runtime-dir lock included).  SOCK_SEQPACKET keeps each request and its attached
    descriptor together as one record.
    """
    from workers import sandbox

    sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    argv = [sys.executable, "-I", "-c", _BOOT, json.dumps(sys.path), str(os.getpid()),
            str(theirs.fileno()), *(["hermes"] if preload_hermes else [])]
    pid = os.posix_spawn(sys.executable, argv, harmless(os.environ))
    theirs.close()
    return pid, ours


def harmless(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` that WORKER_ENVIRONMENT names."""
    return {name: value for name, value in environ.items() if WORKER_ENVIRONMENT.fullmatch(name)}


def main() -> None:
    """The zygote process (see `_BOOT`): serve spawn requests until the daemon hangs up."""
    daemon_pid, channel_fd = int(sys.argv[2]), int(sys.argv[3])
    code = 1
    try:
        code = _serve(socket.socket(fileno=channel_fd), daemon_pid, sys.argv[4:] == ["hermes"])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _serve(channel: socket.socket, daemon_pid: int, preload_hermes: bool = False) -> int:
    from setproctitle import setproctitle

    from workers import main as worker_main
    from workers import sandbox

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    if os.getppid() != daemon_pid:  # the daemon died before we got this far
        return 1
    sandbox.die_with(daemon_pid)
    setproctitle("hermesd: zygote")
    worker_main.warm_up()
    hermes_loaded = preload_hermes
    if preload_hermes:
        _preload_hermes()
    gc.collect()
    gc.freeze()
    while True:
        data, fds, _flags, _addr = socket.recv_fds(channel, protocol.MAX_FRAME + 4, 1)
        if not data:
            return 0  # the daemon closed the channel: shut down
        request = _REQUESTS.decode(data[4:])
        if request.spec.runtime == "hermes" and not hermes_loaded:
            hermes_loaded = True  # the first hermes agent came with a reload: load it now,
            _preload_hermes()  # once, so it and every later one share it (a few seconds)
            gc.collect()
            gc.freeze()
        if not fds:
            reply: object = protocol.SpawnFailed(request.request_id, "no socket attached")
        else:
            try:
                pid = _spawn(channel, fds[0], request, daemon_pid)
                reply = protocol.Spawned(request.request_id, pid)
            except OSError as exc:
                reply = protocol.SpawnFailed(request.request_id, f"fork failed: {exc}")
            finally:
                os.close(fds[0])
        channel.send(_REPLIES.encode(reply))


def _preload_hermes() -> None:
    """hermes-agent imported and warmed up once here rather than in every worker."""
    from workers.runtimes import hermes

    try:
        hermes.preload()
    except Exception as exc:
        print(f"hermesd: zygote preload of hermes-agent skipped: {type(exc).__name__}: {exc}",
              file=sys.stderr)


def _spawn(
    channel: socket.socket, worker_fd: int, request: protocol.SpawnRequest, daemon_pid: int
) -> int:
    """Double-fork one worker and return its pid."""
    from workers import main as worker_main

    read_end, write_end = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            os.close(read_end)
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                channel.close()
                worker_main.run(worker_fd, request.spec, daemon_pid)  # never returns
            os.write(write_end, _PID.pack(worker))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = os.read(read_end, _PID.size)
    finally:
        os.close(read_end)
        os.waitpid(intermediate, 0)
    if len(data) != _PID.size:
        raise OSError("intermediate process died before reporting the worker pid")
    return _PID.unpack(data)[0]


class Zygote:
    """The daemon's handle on the zygote: spawn requests, one at a time."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self._channel = channel
        self._channel.setblocking(False)
        self._next_id = 0
        import anyio  # the daemon side only: imported after the fork

        self._lock = anyio.Lock()

    async def spawn(self, spec: protocol.WorkerSpec, worker_socket: socket.socket) -> int:
        """Fork a worker for `spec` holding `worker_socket`; returns its pid."""
        import anyio

        async with self._lock:
            self._next_id += 1
            request = protocol.SpawnRequest(self._next_id, spec)
            try:
                await anyio.wait_writable(self._channel)
                socket.send_fds(self._channel, [_REQUESTS.encode(request)], [worker_socket.fileno()])
                await anyio.wait_readable(self._channel)
                data = self._channel.recv(protocol.MAX_FRAME + 4)
            except OSError as exc:
                raise ZygoteError(f"zygote channel failed: {exc}") from None
            if not data:
                raise ZygoteError("zygote exited")
            reply = _REPLIES.decode(data[4:])
            if isinstance(reply, protocol.SpawnFailed):
                raise ZygoteError(reply.error)
            return reply.pid

    def close(self) -> None:
        """Closing the channel makes the zygote exit; the daemon reaps it."""
        self._channel.close()

