"""A worker runtime that tries what it is told, with plain system calls and no path
checks of its own (`runtime = "python:tests.fakes.probe_runtime:make"`), so a test sees
exactly what the kernel lets a worker do.

    read PATH            -> the file's text, or the exception's name
    write PATH TEXT      -> "ok", or the exception's name
    symlink TARGET NAME  -> "ok", or the exception's name
    signal PID           -> "ok" if signal 0 could be sent, or the exception's name
    tempfile             -> the path of a new temporary file
    spill                -> "ok" once SQLite sorted more than its cache holds (a temp file)
    escape SOCKET        -> what `hermesctl status` gets from the control socket SOCKET when
                            run from a process that left the worker's session and was
                            orphaned (setsid, double fork), as a hostile tool would hide

A relative PATH or NAME is taken from the workspace, as a tool would.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from hermesd.protocol import Deliver
from workers.runtimes.home import AgentHome, Say


def make(home: AgentHome) -> ProbeRuntime:
    return ProbeRuntime(home.workspace.root)


class ProbeRuntime:
    def __init__(self, root: Path) -> None:
        self._probes: dict[str, Callable[..., str]] = {
            "read": lambda path: (root / path).read_text(),
            "write": lambda path, text: _ok((root / path).write_text(text)),
            "symlink": lambda target, name: _ok((root / name).symlink_to(target)),
            "signal": lambda pid: _ok(os.kill(int(pid), 0)),
            "tempfile": lambda: tempfile.mkstemp()[1],
            "spill": lambda: _ok(_spill(root / "spill.db")),
            "escape": lambda socket_path: _escaped(root, socket_path),
        }

    async def turn(self, message: Deliver) -> AsyncIterator[Say]:
        verb, *args = message.text.split(" ", 2 if message.text.startswith("write ") else -1)
        try:
            answer = self._probes[verb](*args)
        except Exception as exc:
            answer = type(exc).__name__
        yield Say(answer)


def _ok(_: object) -> str:
    return "ok"


def _spill(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA cache_size = 10")
        db.execute("CREATE TEMP TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", ((os.urandom(100),) for _ in range(20_000)))
        db.execute("SELECT x FROM t ORDER BY x").fetchall()


def _escaped(root: Path, socket_path: str) -> str:
    out = root / "escaped.txt"
    status = [sys.executable, "-m", "hermesd.ctl", "--socket", socket_path, "status"]
    program = ("import os, subprocess, sys, time\n"
               "parent = os.getpid()\n"
               "if os.fork(): os._exit(0)\n"
               "os.setsid()\n"
               "while os.getppid() == parent: time.sleep(0.01)\n"  # orphaned: adopted
               f"result = subprocess.run({status!r}, capture_output=True, text=True)\n"
               f"open({str(out)!r} + '.part', 'w').write(result.stdout + result.stderr)\n"
               f"os.rename({str(out)!r} + '.part', {str(out)!r})\n")  # whole or not at all
    subprocess.run([sys.executable, "-c", program], check=True)
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return out.read_text()
