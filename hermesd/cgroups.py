"""`memory_max` enforced by the kernel: one cgroup v2 child per limited agent.

When the daemon runs in a cgroup delegated to it (systemd's `Delegate=yes` gives a
service one), each agent with a `memory_max` gets `<cgroup>/agent-<id>` with `memory.max`
set, and its worker is moved there as soon as the zygote reports its pid.  The kernel
then charges everything the worker and its children allocate (page cache included) and
kills them together (`memory.oom.group`) when they pass the limit.  Without such a
cgroup the supervisor's RSS watchdog enforces `memory_max` instead (see supervisor.py).

cgroup v2's no-internal-processes rule: a cgroup that hands the memory controller to its
children may hold no processes itself, so the daemon and its zygote first move into the
leaf `<cgroup>/daemon`; workers forked later start there, and unlimited agents stay there.

The functions take the cgroup directory as a parameter, so a plain directory with the
control files as regular files stands in for cgroupfs in tests.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

from hermesd import log

DAEMON_LEAF = "daemon"
AGENT_PREFIX = "agent-"
MIB = 1024 * 1024


class Unusable(Exception):
    """Why the kernel cannot enforce memory_max here (the RSS watchdog does instead)."""


# ---------------------------------------------------------------- finding our cgroup


def own_cgroup(proc_cgroup: str) -> str:
    """The cgroup v2 path in /proc/self/cgroup (its `0::/path` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    raise Unusable("not in a cgroup v2 hierarchy (no 0:: line in /proc/self/cgroup)")


def cgroup2_mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(root within the hierarchy, mount point) of every cgroup2 mount in a mountinfo
    text.  The filesystem type follows the ` - ` separator (optional fields vary)."""
    mounts = []
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if sep and len(fields) >= 5 and after.split()[:1] == ["cgroup2"]:
            mounts.append((_unescape(fields[3]), _unescape(fields[4])))
    return mounts


def locate(proc_cgroup: str, mountinfo: str) -> Path:
    """The directory of the daemon's own cgroup v2, from /proc/self/{cgroup,mountinfo}."""
    path = own_cgroup(proc_cgroup)
    mounts = cgroup2_mounts(mountinfo)
    if not mounts:
        raise Unusable("no cgroup2 filesystem is mounted")
    if path == "/":
        raise Unusable("hermesd runs in the root cgroup, which it must not reorganise")
    for root, mount_point in mounts:
        inside = _relative(path, root)
        if inside is not None:
            return Path(mount_point, inside)
    raise Unusable(f"cgroup {path} is not visible under any cgroup2 mount")


def _relative(path: str, root: str) -> str | None:
    """`path` relative to the mount's `root`, or None if the mount does not show it."""
    if root == "/":
        return path.lstrip("/")
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return path[len(root):].lstrip("/")
    return None


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as octal escapes (\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


# ---------------------------------------------------------------- the agents' cgroups


class MemoryCgroups:
    """The delegated cgroup `root`, set up for per-agent memory limits."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def setup(cls, root: Path, ours: Iterable[int]) -> MemoryCgroups:
        """Check `root` is ours to manage, move its processes (which must all be among
        `ours`: the daemon and the zygote) into the daemon leaf, and enable the memory
        controller for children.  Raises Unusable, saying which step failed."""
        try:
            controllers = _read(root / "cgroup.controllers").split()
        except OSError as exc:
            raise Unusable(f"cannot read {root}/cgroup.controllers: {exc.strerror}") from None
        if "memory" not in controllers:
            raise Unusable(f"the memory controller is not available in {root} "
                           f"(controllers: {' '.join(controllers) or 'none'})")
        if not (os.access(root, os.W_OK) and os.access(root / "cgroup.subtree_control", os.W_OK)):
            raise Unusable(f"no permission to manage {root} (a delegated cgroup is needed)")
        try:
            pids = [int(pid) for pid in _read(root / "cgroup.procs").split()]
            strangers = sorted(set(pids) - set(ours))
            if strangers:
                raise Unusable(f"{root} also holds processes that are not hermesd's "
                               f"(pid {', '.join(map(str, strangers[:5]))})")
            leaf = root / DAEMON_LEAF
            leaf.mkdir(exist_ok=True)
            for pid in pids:
                _write(leaf / "cgroup.procs", str(pid))
            _write(root / "cgroup.subtree_control", "+memory")
        except OSError as exc:
            raise Unusable(f"cannot set up {root}: {exc.strerror or exc} ({exc.filename})") from None
        cgroups = cls(root)
        for stale in root.glob(AGENT_PREFIX + "*"):  # left by a daemon that was killed
            cgroups._rmdir(stale)
        return cgroups

    def path(self, agent_id: str) -> Path:
        return self.root / f"{AGENT_PREFIX}{agent_id}"

    def prepare(self, agent_id: str, memory_max: int | None) -> bool:
        """Make the agent's cgroup match its `memory_max` (or remove it if it has none)
        before a worker starts.  False if it could not be set: the worker then runs
        without the kernel limit, and the caller falls back to the RSS watchdog."""
        if memory_max is None:
            self.remove(agent_id)
            return False
        cgroup = self.path(agent_id)
        try:
            cgroup.mkdir(exist_ok=True)
            _write(cgroup / "memory.max", str(memory_max))
            _write(cgroup / "memory.oom.group", "1")  # the worker and what it started die together
            if (cgroup / "memory.swap.max").exists():  # absent without swap accounting
                _write(cgroup / "memory.swap.max", "0")  # else the limit is dodged by swapping
        except OSError as exc:
            log.error("cgroup_failed", agent=agent_id, cgroup=str(cgroup), error=str(exc),
                      consequence="memory_max is enforced by the RSS watchdog for this worker")
            return False
        return True

    def place(self, agent_id: str, pid: int) -> bool:
        """Move the worker `pid` into the agent's cgroup."""
        try:
            _write(self.path(agent_id) / "cgroup.procs", str(pid))
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # ESRCH: it died already; its exit tells the rest
                log.error("cgroup_failed", agent=agent_id, pid=pid, error=str(exc),
                          consequence="memory_max is enforced by the RSS watchdog for this worker")
            return False
        return True

    def oom_kills(self, agent_id: str) -> int:
        """How many times the kernel killed for memory in the agent's cgroup (0 if none)."""
        try:
            events = _read(self.path(agent_id) / "memory.events")
        except OSError:
            return 0
        for line in events.splitlines():
            name, _, count = line.partition(" ")
            if name == "oom_kill" and count.strip().isdigit():
                return int(count)
        return 0

    def killed_for_memory(self, agent_id: str, oom_kills_before: int) -> bool:
        """Whether the kernel killed in the agent's cgroup since it counted `oom_kills_before`."""
        return self.oom_kills(agent_id) > oom_kills_before

    def remove(self, agent_id: str) -> None:
        """Remove the agent's cgroup (after its worker stopped), if it has one."""
        self._rmdir(self.path(agent_id))

    def _rmdir(self, cgroup: Path) -> None:
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY: something the worker started is still in it
            log.warning("cgroup_not_removed", cgroup=str(cgroup), error=exc.strerror or str(exc))


def kernel_kill_reason(memory_max: int) -> str:
    """The last error of a worker the kernel killed for passing its limit."""
    size = f"{memory_max // MIB} MiB" if memory_max % MIB == 0 else f"{memory_max // 1024} KiB"
    return f"memory_max exceeded: killed by the kernel (cgroup memory.max {size})"


def from_proc(ours: Iterable[int]) -> tuple[MemoryCgroups | None, str]:
    """Set up the daemon's own delegated cgroup if it can enforce memory_max.  Returns it
    (or None) and what enforces memory_max, as `hermesctl status` shows it; says once
    in the log which mechanism is used and, for the watchdog, why."""
    try:
        root = locate(_read(Path("/proc/self/cgroup")), _read(Path("/proc/self/mountinfo")))
        cgroups = MemoryCgroups.setup(root, ours)
    except (Unusable, OSError) as exc:
        log.info("memory_limits", mechanism="rss watchdog", reason=str(exc),
                 hint="run hermesd in a delegated cgroup v2 (systemd Delegate=yes) "
                      "for kernel-enforced limits")
        return None, "rss watchdog"
    log.info("memory_limits", mechanism="cgroup", cgroup=str(root))
    return cgroups, f"cgroup {root}"


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


def _write(path: Path, value: str) -> None:
    """One write per value, as cgroupfs wants.  O_APPEND without O_CREAT: harmless on
    cgroupfs, and a stand-in directory keeps every value written, in order."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, f"{value}\n".encode())
    except OSError as exc:  # the kernel refuses at write time: name the file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)
