"""Run a command under the part of etc/hermesd.service's sandbox that can be set up without
systemd as PID 1, so tests can show the hardening does not break the daemon:

    python -m tests.unit_sandbox UNIT_FILE -- COMMAND...

Applied, as systemd would (systemd.exec(5)): SystemCallFilter= (each @group expanded by
`systemd-analyze syscall-filter`, with SystemCallErrorNumber=) for the native architecture
only, MemoryDenyWriteExecute=, RestrictAddressFamilies=, NoNewPrivileges=, an empty
CapabilityBoundingSet= (the command runs with no capability at all), ProtectProc=invisible
and ProcSubset=pid (a private /proc).  Not applied: User= (the command keeps uid 0, but
without capabilities, so file permissions bind it like any user: here the interpreter
lives under /root, which no other uid may enter), the other mount settings
(ProtectSystem=, PrivateTmp=, ...), RestrictNamespaces=, Delegate=.
Must start as root; libseccomp is called through ctypes (the library systemd uses).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_MASKED_EQ = 4, 5, 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
AF_MAX = 46
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x20000, 0x4000, 0x40000


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


libc = ctypes.CDLL(None, use_errno=True)
seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]


def settings(unit: Path) -> dict[str, list[str]]:
    """[Service] keys and their values in order."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";", "[")):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def expand(names: list[str]) -> set[str]:
    """System call names, with each @group replaced by its members (recursively)."""
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                                 text=True, check=True).stdout.splitlines()[1:]
        calls |= expand([line.strip() for line in listing if line.strip() and not line.strip().startswith("#")])
    return calls


def syscall_filter(values: list[str]) -> set[str]:
    """SystemCallFilter=: the allow lists together, less the `~` deny lists."""
    allowed = expand([n for v in values if not v.startswith("~") for n in v.split()])
    return allowed - expand([n for v in values if v.startswith("~") for n in v[1:].split()])


def load(default: int, rules: list[tuple[int, str, list[ArgCmp]]]) -> None:
    """One seccomp filter; the kernel applies every loaded filter, the strictest wins."""
    context = seccomp.seccomp_init(default)
    for action, name, conditions in rules:
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            continue  # not a call of this architecture (e.g. mmap2)
        array = (ArgCmp * len(conditions))(*conditions)
        if seccomp.seccomp_rule_add_array(context, action, number, len(conditions), array) < 0:
            raise OSError(f"seccomp rule for {name} refused")
    if seccomp.seccomp_load(context) < 0:
        raise OSError("seccomp_load failed")


def private_proc() -> None:
    """ProtectProc=invisible, ProcSubset=pid: /proc shows our user's processes only, and no
    non-process files (no /proc/stat, /proc/meminfo, /proc/sys)."""
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "private mount namespace")
    if libc.mount(b"proc", b"/proc", b"proc", 0, b"hidepid=invisible,subset=pid") != 0:
        raise OSError(ctypes.get_errno(), "mount /proc")


def confine(unit: Path) -> None:
    config = settings(unit)
    allowed = syscall_filter(config["SystemCallFilter"])
    error = getattr(errno, config.get("SystemCallErrorNumber", [""])[-1], None)
    refuse = 0x00050000 | error if error else SCMP_ACT_KILL_PROCESS  # SCMP_ACT_ERRNO(error)
    last_capability = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    private_proc()
    for capability in range(last_capability + 1):  # an empty bounding set: exec grants none
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"drop capability {capability}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    families = {getattr(socket, name) for value in config["RestrictAddressFamilies"] for name in value.split()}
    eaccess = 0x00050000 | errno.EAFNOSUPPORT
    load(SCMP_ACT_ALLOW, [(eaccess, "socket", [ArgCmp(0, SCMP_CMP_EQ, family, 0)])
                          for family in range(AF_MAX) if family not in families]
         + [(eaccess, "socket", [ArgCmp(0, SCMP_CMP_GE, AF_MAX, 0)])])
    if config.get("MemoryDenyWriteExecute") == ["yes"]:
        wx = PROT_WRITE | PROT_EXEC
        load(SCMP_ACT_ALLOW, [(refuse, "mmap", [ArgCmp(2, SCMP_CMP_MASKED_EQ, wx, wx)]),
                              (refuse, "mprotect", [ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                              (refuse, "pkey_mprotect", [ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                              (refuse, "shmat", [ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)])])
    load(refuse, [(SCMP_ACT_ALLOW, name, []) for name in sorted(allowed)])


def main() -> None:
    unit, separator, *command = sys.argv[1:]
    assert separator == "--", __doc__
    confine(Path(unit))
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
