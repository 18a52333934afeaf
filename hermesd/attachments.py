"""Files an agent sends with a reply.  The parent reads them (workers hold no platform
connection), so a worker could try to make the parent send any file it can read: every
path is checked to lie in that agent's workspace or shared paths, when the reply is stored
and again, on the open file descriptor, when it is sent."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from hermesd.protocol import WorkerSpec

MAX_FILE = 50 * 1024 * 1024  # what bot platforms accept from a bot


class Refused(Exception):
    pass


def roots(spec: WorkerSpec) -> list[Path]:
    return [Path(spec.workspace).resolve(), *(Path(s.path).resolve() for s in spec.shared_paths)]


def check(spec: WorkerSpec, name: str) -> str:
    """The real absolute path of `name` (relative to the workspace, or absolute) if the
    agent may send it."""
    real = (Path(spec.workspace) / name).resolve()
    if not any(real.is_relative_to(root) for root in roots(spec)):
        raise Refused("outside the agent's workspace and shared paths")
    try:
        info = real.stat()
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused("not a regular file")
    if info.st_size > MAX_FILE:
        raise Refused(f"larger than {MAX_FILE // 2**20} MB")
    return str(real)


def open_checked(path: str, allowed: list[Path]) -> BinaryIO:
    """Open a path `check` accepted earlier, refusing it if it has been swapped for a
    symlink or moved out of `allowed` since."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not any(real.is_relative_to(r) for r in allowed):
            raise Refused(f"{path} changed since the agent sent it")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
