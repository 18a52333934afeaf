"""Process-level setup a worker applies to itself before it runs agent code.

The order matters (DESIGN §6): a new session first (so a terminal's Ctrl-C reaches the
daemon only), then the parent-death signal once the worker is the daemon's child, then
the process title.  Privilege drop, Landlock and memory limits belong here too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

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
    in case the daemon died in between.
    """
    deadline = time.monotonic() + timeout
    while os.getppid() != parent_pid:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reparented to the daemon (pid {parent_pid})")
        time.sleep(0.0002)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
