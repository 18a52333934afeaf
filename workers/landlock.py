"""Landlock: the kernel's own check that a worker touches only its own files (DESIGN §6).

`Workspace.resolve` is the first line: every path a tool names must land in the workspace
or a shared path.  This is the second, and it also holds for code that never asks
(a runtime's own `open()`, a library, injected code): once `confine` has run, this process
and everything it starts may read and write only its workspace and its `rw` shared paths,
read its `ro` shared paths, and read (and execute) the system: /usr, /lib, /etc, Python's
prefixes and import path.  /proc gives it only itself, so no other process's environment;
from ABI 6 it can neither signal processes outside its domain (the daemon, other workers)
nor connect to their abstract Unix sockets.

A kernel without Landlock (ENOSYS, or EOPNOTSUPP when it is built but not enabled) leaves
the path checks alone on guard; the worker says so in the log (landlock_unavailable).
Any other failure is a bug here, and the worker stops rather than run unconfined.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sqlite3
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hermesd import protocol

# Same numbers on every architecture: Landlock came after the syscall tables were unified.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (linux/landlock.h), by the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER = 1 << 13  # ABI 2: link or rename across directories
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5: ioctl on device files
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

FILE_ACCESS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights that mean something on a file that is not a directory (others are EINVAL)."""

READ = READ_FILE | READ_DIR
READ_EXECUTE = READ | EXECUTE
READ_WRITE = (READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK
              | MAKE_FIFO | MAKE_SYM | REFER | TRUNCATE)
"""Everything but executing, and device nodes: what is written is never run."""
DEVICE_READ = READ_FILE | IOCTL_DEV
DEVICE_READ_WRITE = DEVICE_READ | WRITE_FILE | TRUNCATE

SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
DEVICES = {"/dev/null": DEVICE_READ_WRITE, "/dev/zero": DEVICE_READ,
           "/dev/urandom": DEVICE_READ, "/dev/random": DEVICE_READ}


@dataclass(frozen=True)
class Confinement:
    """What `confine` applied: the Landlock ABI (0 = none), and if none, why."""

    abi: int
    unavailable: str = ""
    skipped: tuple[str, ...] = ()
    """Readable paths left out because they contain the workspace (and its neighbours)."""

    def warnings(self) -> list[protocol.Log]:
        """What the operator should know: the worker runs on path checks alone, or without
        some system path it may need."""
        warnings = []
        if self.unavailable:
            warnings.append(protocol.Log(level="warning", event="landlock_unavailable",
                                         fields={"reason": self.unavailable}))
        if self.skipped:
            warnings.append(protocol.Log(level="warning", event="landlock_path_skipped",
                                         fields={"paths": " ".join(self.skipped),
                                                 "reason": "contains the workspace"}))
        return warnings


NOT_APPLIED = Confinement(0)  # the zygote's warm-up: no sandbox, and nothing to warn about


def handled_access(abi: int) -> int:
    """The filesystem rights this ABI can restrict; all of them are denied unless a rule
    grants them."""
    mask = (MAKE_SYM << 1) - 1
    if abi >= 2:
        mask |= REFER
    if abi >= 3:
        mask |= TRUNCATE
    if abi >= 5:
        mask |= IOCTL_DEV
    return mask


def scopes(abi: int) -> int:
    """IPC this ABI can fence off from everything outside the worker's own domain."""
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def rules(spec: protocol.WorkerSpec) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, rights) for this worker, and the readable paths skipped because they hold its
    workspace: a read rule on an ancestor would let it read the other agents next to it."""
    workspace = Path(spec.workspace).resolve()
    granted = [(str(workspace), READ_WRITE)]
    granted += [(shared.path, READ_WRITE if shared.mode == "rw" else READ)
                for shared in spec.shared_paths]
    readable = [*SYSTEM_PATHS, *_etc_link_targets(), sys.prefix, sys.base_prefix,
                *(entry for entry in sys.path if entry and os.path.isdir(entry)),
                *_own_code()]
    skipped = []
    for path in dict.fromkeys(readable):
        if workspace.is_relative_to(Path(path).resolve()):
            skipped.append(path)
        else:
            granted.append((path, READ_EXECUTE))
    granted += list(DEVICES.items())
    granted.append(("/proc/self", READ))
    return granted, skipped


def _own_code() -> list[str]:
    """hermesd's own packages, wherever they are: an editable install finds them through an
    import hook rather than sys.path, and a worker imports some of them late (a runtime's
    module, the first time it is needed)."""
    import hermesd
    import workers

    return [str(Path(package.__file__).parent) for package in (hermesd, workers)]


def _etc_link_targets() -> list[str]:
    """Directories that symlinks in /etc lead out to (resolv.conf -> /run/systemd/resolve/
    on systemd-resolved hosts), so name resolution keeps working; the directory, not the
    file, because such files are replaced rather than rewritten."""
    targets = []
    try:
        entries = list(os.scandir("/etc"))
    except OSError:
        return []
    for entry in entries:
        if entry.is_symlink():
            target = Path(os.path.realpath(entry.path))
            if target.exists() and not target.is_relative_to("/etc"):
                targets.append(str(target if target.is_dir() else target.parent))
    return targets


def abi_version() -> int:
    """The kernel's Landlock ABI; 0 when it has none (raises OSError for other errors)."""
    abi = _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi < 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise OSError(code, f"landlock_create_ruleset(VERSION): {os.strerror(code)}")
    return abi


def confine(spec: protocol.WorkerSpec) -> Confinement:
    """Restrict this process (single-threaded, as forked) to `spec`'s files, for good."""
    try:
        os.makedirs(spec.workspace, exist_ok=True)  # a rule needs the directory to exist
    except OSError:
        pass  # the worker's setup reports it (worker_setup_failed), with the reason
    abi = abi_version()
    if abi == 0:
        return Confinement(0, unavailable="the kernel has no Landlock (or it is disabled)")
    handled = handled_access(abi)
    attr = _RulesetAttr(handled, 0, scopes(abi))
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else ctypes.sizeof(ctypes.c_uint64)
    ruleset = _check(_syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0), "create_ruleset")
    try:
        granted, skipped = rules(spec)
        for path, access in granted:
            _add_rule(ruleset, path, access & handled)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_syscall(_SYS_RESTRICT_SELF, ruleset, 0), "restrict_self")
    finally:
        os.close(ruleset)
    _private_tmp(Path(spec.workspace).resolve() / ".tmp")
    return Confinement(abi, skipped=tuple(skipped))


def _private_tmp(tmp: Path) -> None:
    """/tmp is shared by every process, so it is out of reach here: temporary files, Python's
    and SQLite's (a big sort or temp table spills to one), go to the workspace's .tmp/."""
    try:
        tmp.mkdir(exist_ok=True)
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None  # found again from TMPDIR at its next use
        quoted = str(tmp).replace("'", "''")
        with contextlib.closing(sqlite3.connect(":memory:")) as db:  # sets it process-wide
            db.execute(f"PRAGMA temp_store_directory = '{quoted}'")
    except (OSError, sqlite3.Error):
        pass  # no usable workspace: the worker's setup reports it (worker_setup_failed)


def _add_rule(ruleset: int, path: str, access: int) -> None:
    """Grant `access` beneath `path`; a path that does not exist is skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_ACCESS
        rule = _PathBeneathAttr(access, fd)
        _check(_syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0),
               f"add_rule({path})")
    finally:
        os.close(fd)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    """syscall(2) takes longs: a plain int would go through C varargs as a 32-bit int."""
    return _libc.syscall(ctypes.c_long(number),
                         *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"landlock {what}: {os.strerror(code)}")
    return result
