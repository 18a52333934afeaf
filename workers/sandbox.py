"""Process-level setup a worker applies to itself before it runs agent code.

The order matters (DESIGN §6): a new session first (so a terminal's Ctrl-C reaches the
daemon only), then, in a root daemon with `[daemon] user`, the workspace is handed to that
user and privileges are dropped, then the parent-death signal once the worker is the
daemon's child (setuid clears it, hence after the drop), then the process title.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

from hermesd.protocol import RunAs

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def die_with(parent_pid: int, timeout: float = 5.0) -> None:
    """Arrange to be SIGKILLed when `parent_pid` exits.

    The worker is born to a short-lived intermediate process and reparented to the daemon
    (a child subreaper) when that exits.  PDEATHSIG fires when the *current* parent dies,
    so it can only be set once the daemon is the parent; then getppid() is checked again
    in case the daemon died in between.  Reparented to anyone else, the daemon is already
    gone: exit at once.
    """
    deadline = time.monotonic() + timeout
    born_to = os.getppid()
    while (parent := os.getppid()) != parent_pid:
        if parent != born_to:
            os._exit(1)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reparented to the daemon (pid {parent_pid})")
        time.sleep(0.0002)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def become(run_as: RunAs | None, workspace: Path) -> None:
    """Give `workspace` to `run_as` and become that user, for good.  Nothing to do without
    a user, or when the daemon already runs as it (an unprivileged daemon)."""
    if run_as is None or os.geteuid() == run_as.uid:
        return
    _give_workspace(run_as, workspace)
    os.setgroups(run_as.groups)
    os.setgid(run_as.gid)
    os.setuid(run_as.uid)
    _check_dropped(run_as)


def _give_workspace(run_as: RunAs, workspace: Path) -> None:
    """Create the workspace if missing, owned by the user and private to it.  Its content
    is re-owned only when the top is not yet the user's (a new workspace, a profile that
    was imported as root, or a changed `user`): the walk is skipped at every other start."""
    workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
    if workspace.stat().st_uid != run_as.uid:
        for directory, dirs, files in os.walk(workspace):
            for name in dirs + files:
                os.chown(os.path.join(directory, name), run_as.uid, run_as.gid,
                         follow_symlinks=False)
        os.chown(workspace, run_as.uid, run_as.gid)  # last: it marks the walk as done
    os.chmod(workspace, 0o700)


def _check_dropped(run_as: RunAs) -> None:
    """Refuse to run agent code unless the drop took, and cannot be undone."""
    ids = (os.getresuid(), os.getresgid(), sorted(os.getgroups()))
    expected = ((run_as.uid,) * 3, (run_as.gid,) * 3, sorted(run_as.groups))
    if ids != expected:
        raise RuntimeError(f"privilege drop to {run_as.user} failed: uid/gid/groups are {ids}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError(f"privilege drop to {run_as.user} failed: setuid(0) still works")
