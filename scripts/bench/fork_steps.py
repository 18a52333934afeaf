#!/usr/bin/env python3
"""Memory of an idle worker, by step: what fork alone, an event loop, the worker's own
code and its first message each add to a worker's unique memory (USS).

Why: memory.py measures real workers after one message each; this splits that figure up.
The script plays the daemon: it imports what hermesd imports before it forks the zygote,
makes itself a child subreaper, and forks a zygote-like process that does exactly what the
real zygote does before serving (warm_up(), gc.collect(), gc.freeze()).  That process then
double-forks children the way the zygote does, so each child is reparented to this script,
and each child goes only as far as its step:

  fork        nothing: the child writes a byte to its socket and pauses
  +setup      the worker's process setup (setsid, PDEATHSIG, process title), then pause
  +loop       ... and start and stop an anyio event loop (anyio.run(anyio.sleep, 0))
  +worker     the real worker (workers.main.run): anyio loop, socket stream, Hello, idle
  +message    ... and it has answered one message (which opens its SQLite ledger)

Each step has several sibling children (3 by default), so that pages this script or the
zygote write after the fork stay shared among siblings and do not look private to one
child.  After a settle time it reads USS (psutil) and the private memory per mapping
(/proc/<pid>/smaps) of every child.

Run with the venv's python:  .venv/bin/python scripts/bench/fork_steps.py [--siblings 3]
"""

# Before the zygote fork only what hermesd.daemon imports before its fork (plus os-level
# modules), so the zygote-like process holds the same modules as the real one.
from __future__ import annotations

import argparse
import fcntl  # noqa: F401  (hermesd.daemon has it)
import gc
import os
import signal
import socket
import struct
import sys
import traceback

from hermesd import config, log, protocol  # noqa: F401  (what hermesd.daemon and hermesd.zygote import)
from workers import sandbox

STEPS = ("fork", "+setup", "+loop", "+worker", "+message")
_PID = struct.Struct(">i")


def child(step: str, fd: int, spec: protocol.WorkerSpec, daemon_pid: int) -> None:
    """The forked child: go as far as `step`, tell the script over `fd`, then idle."""
    from workers import main as worker_main

    if step in ("+worker", "+message"):
        worker_main.run(fd, spec, daemon_pid)  # never returns; says Hello over fd
    if step == "fork":
        os.write(fd, b"r")
        while True:
            signal.pause()
    from setproctitle import setproctitle

    os.setsid()
    sandbox.die_with(daemon_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setproctitle(f"hermesd: agent {spec.agent_id}")
    if step == "+loop":
        import anyio

        anyio.run(anyio.sleep, 0)
    os.write(fd, b"r")
    while True:
        signal.pause()


def zygote(channel: socket.socket, daemon_pid: int) -> int:
    """What hermesd.zygote._serve does before serving, then double-fork on request."""
    from setproctitle import setproctitle

    from workers import main as worker_main

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sandbox.die_with(daemon_pid)
    setproctitle("hermesd: zygote")
    worker_main.warm_up()
    gc.collect()
    gc.freeze()
    while True:
        data, fds, _flags, _addr = socket.recv_fds(channel, 65536, 1)
        if not data:
            return 0
        step, workspace = data.decode().split("\0")
        spec = protocol.WorkerSpec(agent_id=f"step{step}", runtime="echo", workspace=workspace)
        read_end, write_end = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            try:
                os.close(read_end)
                pid = os.fork()
                if pid == 0:
                    os.close(write_end)
                    channel.close()
                    try:
                        child(step, fds[0], spec, daemon_pid)
                    finally:
                        os._exit(1)
                os.write(write_end, _PID.pack(pid))
            finally:
                os._exit(0)
        os.close(write_end)
        pid_bytes = os.read(read_end, _PID.size)
        os.close(read_end)
        os.close(fds[0])
        os.waitpid(intermediate, 0)
        channel.send(pid_bytes)


def fork_zygote() -> tuple[int, socket.socket]:
    sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)
    daemon_pid = os.getpid()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        code = 1
        try:
            code = zygote(theirs, daemon_pid)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--siblings", type=int, default=3, help="children per step (default %(default)s)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to idle before measuring")
    parser.add_argument("--time-limit", type=float, default=60,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()

    zygote_pid, channel = fork_zygote()
    # The daemon's side: from here on, imports no longer reach the zygote.
    import shutil
    import tempfile
    import time
    from statistics import fmean as mean

    import _harness as h
    import psutil

    h.guard(args.time_limit)
    tmp = tempfile.mkdtemp(prefix="hermesd-steps-")
    children: dict[str, list[tuple[int, socket.socket]]] = {step: [] for step in STEPS}
    to_worker = protocol.Codec(protocol.ParentFrame)
    from_worker = protocol.Codec(protocol.WorkerFrame)

    def read_until(sock: socket.socket, reader: protocol.FrameReader, kind: type) -> None:
        while True:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("a worker closed its socket")
            if any(isinstance(from_worker.decode(body), kind) for body in reader.feed(data)):
                return

    try:
        for i in range(args.siblings):  # interleaved: every step sees the same zygote history
            for step in STEPS:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                workspace = os.path.join(tmp, f"{STEPS.index(step)}-{i}")
                socket.send_fds(channel, [f"{step}\0{workspace}".encode()], [theirs.fileno()])
                theirs.close()
                pid = _PID.unpack(channel.recv(_PID.size))[0]
                children[step].append((pid, ours))
        for step, kids in children.items():
            for n, (_pid, sock) in enumerate(kids):
                sock.settimeout(10)
                if step in ("fork", "+setup", "+loop"):
                    if sock.recv(1) != b"r":
                        raise RuntimeError(f"child of step {step} failed")
                    continue
                reader = protocol.FrameReader()
                read_until(sock, reader, protocol.Hello)
                if step == "+message":
                    sock.sendall(to_worker.encode(protocol.Deliver(
                        msg_id=n + 1, platform="local", session_key=f"local:step-{n}", text="hi")))
                    read_until(sock, reader, protocol.Done)
        time.sleep(args.settle)

        rows = [["step", "USS MiB mean", "min", "max", "[anon] KiB", "[heap] KiB", "libpython KiB",
                 "other KiB"]]
        uss_means = {}
        for step, kids in children.items():
            uss, parts = [], {"[anon]": [], "[heap]": [], "libpython": [], "other": []}
            for pid, _sock in kids:
                uss.append(psutil.Process(pid).memory_full_info().uss)
                split = dict.fromkeys(parts, 0)
                for name, size in h.private_by_mapping(pid, top=1000):
                    key = name if name in ("[anon]", "[heap]") else "libpython" if "libpython" in name else "other"
                    split[key] += size
                for key in parts:
                    parts[key].append(split[key])
            uss_means[step] = mean(uss)
            rows.append([step, f"{mean(uss) / h.MiB:.2f}", f"{min(uss) / h.MiB:.2f}", f"{max(uss) / h.MiB:.2f}"]
                        + [f"{mean(parts[key]) / 1024:.0f}" for key in parts])
        zygote = psutil.Process(zygote_pid).memory_full_info()
        print(f"{args.siblings} sibling children per step, forked from a zygote-like process "
              f"(RSS {zygote.rss / h.MiB:.1f} MiB); private memory after {args.settle:g} s idle")
        print(h.table(rows))
        print()
        previous = None
        for step in STEPS:
            if previous is not None:
                print(f"{step:>9}: {(uss_means[step] - uss_means[previous]) / h.MiB:+.2f} MiB")
            previous = step
        return 0
    finally:
        pids = [pid for kids in children.values() for pid, _ in kids]
        procs = []
        for pid in [zygote_pid, *pids]:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        channel.close()
        h.kill_processes(procs)
        for kids in children.values():
            for _pid, sock in kids:
                sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes cleaned up", file=sys.stderr)
        sys.exit(130)
