"""Finding the daemon's cgroup and the file protocol of setting up agents' memory cgroups.

A plain directory with the control files as regular files stands in for cgroupfs: the
code writes one value per write, so each file keeps every value written, in order.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hermesd import cgroups
from hermesd.cgroups import MemoryCgroups, Unusable
from hermesd.config import DaemonConfig
from hermesd.protocol import WorkerSpec
from hermesd.slot import Slot
from hermesd.supervisor import Supervisor

HYBRID_CGROUP = """\
9:name=systemd:/system.slice/hermesd.service
4:memory:/system.slice/hermesd.service
1:cpu:/
0::/system.slice/hermesd.service
"""
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CGROUP = "0::/system.slice/hermesd.service\n"
V2_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
V1_CGROUP = "4:memory:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n"
V1_MOUNTINFO = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"


def test_hybrid_host_finds_the_unified_mount() -> None:
    found = cgroups.locate(HYBRID_CGROUP, HYBRID_MOUNTINFO)
    assert found == Path("/sys/fs/cgroup/unified/system.slice/hermesd.service")


def test_pure_v2_host_finds_the_service_cgroup() -> None:
    assert cgroups.locate(V2_CGROUP, V2_MOUNTINFO) == Path("/sys/fs/cgroup/system.slice/hermesd.service")


def test_v1_only_host_is_unusable_with_reason() -> None:
    with pytest.raises(Unusable, match="not in a cgroup v2 hierarchy"):
        cgroups.locate(V1_CGROUP, V1_MOUNTINFO)


def test_no_cgroup2_mount_is_unusable_with_reason() -> None:
    with pytest.raises(Unusable, match="no cgroup2 filesystem is mounted"):
        cgroups.locate(V2_CGROUP, V1_MOUNTINFO)


def test_root_cgroup_is_never_reorganised() -> None:
    with pytest.raises(Unusable, match="root cgroup"):
        cgroups.locate("0::/\n", V2_MOUNTINFO)


def test_namespaced_mount_root_is_stripped() -> None:
    mountinfo = "26 22 0:23 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroups.locate(V2_CGROUP, mountinfo) == Path("/sys/fs/cgroup/hermesd.service")


def test_cgroup_outside_the_mounted_subtree_is_unusable() -> None:
    mountinfo = "26 22 0:23 /other.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    with pytest.raises(Unusable, match="not visible under any cgroup2 mount"):
        cgroups.locate(V2_CGROUP, mountinfo)


def test_escaped_mount_point_is_decoded() -> None:
    mountinfo = r"26 22 0:23 / /mnt/cg\040two rw - cgroup2 cgroup2 rw" + "\n"
    assert cgroups.cgroup2_mounts(mountinfo) == [("/", "/mnt/cg two")]


# ---------------------------------------------------------------- the fake cgroup tree


def control_files(directory: Path, files: dict[str, str] | None = None) -> Path:
    """What the kernel shows in a cgroup directory, as regular files."""
    directory.mkdir(exist_ok=True)
    defaults = {"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": "",
                "cgroup.procs": "", "memory.max": "max\n", "memory.oom.group": "0\n",
                "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"}
    for name, text in (defaults | (files or {})).items():
        (directory / name).write_text(text)
    return directory


def written(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = control_files(tmp_path / "hermesd.service", {"cgroup.procs": "100\n101\n"})
    control_files(root / "daemon")
    control_files(root / "agent-coder", {"memory.swap.max": "max\n"})
    return root


def test_setup_moves_daemon_and_zygote_into_the_leaf_then_enables_memory(tree: Path) -> None:
    MemoryCgroups.setup(tree, ours={100, 101})
    assert written(tree / "daemon" / "cgroup.procs") == ["100", "101"]
    assert written(tree / "cgroup.subtree_control") == ["+memory"]


def test_setup_refuses_a_cgroup_shared_with_other_processes(tree: Path) -> None:
    with pytest.raises(Unusable, match=r"not hermesd's \(pid 101\)"):
        MemoryCgroups.setup(tree, ours={100})
    assert written(tree / "daemon" / "cgroup.procs") == []  # nothing was moved
    assert written(tree / "cgroup.subtree_control") == []


def test_setup_without_memory_controller_names_the_controllers(tree: Path) -> None:
    (tree / "cgroup.controllers").write_text("hugetlb\n")
    with pytest.raises(Unusable, match=r"memory controller is not available .* \(controllers: hugetlb\)"):
        MemoryCgroups.setup(tree, ours={100, 101})


def test_setup_without_controllers_file_is_unusable(tmp_path: Path) -> None:
    with pytest.raises(Unusable, match="cannot read .*cgroup.controllers"):
        MemoryCgroups.setup(tmp_path, ours={os.getpid()})


def test_setup_that_cannot_write_reports_the_file(tree: Path) -> None:
    (tree / "cgroup.subtree_control").unlink()  # the kernel would refuse the write
    (tree / "cgroup.subtree_control").mkdir()
    with pytest.raises(Unusable, match="cannot set up"):
        MemoryCgroups.setup(tree, ours={100, 101})


def test_agent_cgroup_gets_its_limit_group_kill_and_no_swap(tree: Path) -> None:
    memory = MemoryCgroups(tree)
    assert memory.prepare("coder", 256 * 1024 * 1024)
    agent = tree / "agent-coder"
    assert written(agent / "memory.max") == ["max", "268435456"]
    assert written(agent / "memory.oom.group") == ["0", "1"]
    assert written(agent / "memory.swap.max") == ["max", "0"]


def test_swap_limit_is_skipped_where_the_kernel_has_none(tree: Path) -> None:
    (tree / "agent-coder" / "memory.swap.max").unlink()
    assert MemoryCgroups(tree).prepare("coder", 1024 * 1024)
    assert not (tree / "agent-coder" / "memory.swap.max").exists()


def test_unwritable_limit_falls_back_to_the_watchdog(tree: Path) -> None:
    assert not MemoryCgroups(tree).prepare("other", 1024 * 1024)  # mkdir made no control files


def test_worker_is_placed_in_its_agent_cgroup(tree: Path) -> None:
    assert MemoryCgroups(tree).place("coder", 4242)
    assert written(tree / "agent-coder" / "cgroup.procs") == ["4242"]


def test_new_oom_kill_is_recognised(tree: Path) -> None:
    memory = MemoryCgroups(tree)
    before = memory.oom_kills("coder")
    assert not memory.killed_for_memory("coder", before)
    (tree / "agent-coder" / "memory.events").write_text("oom 1\noom_kill 1\noom_group_kill 1\n")
    assert memory.killed_for_memory("coder", before)


def test_agent_without_limit_loses_its_cgroup(tmp_path: Path) -> None:
    (tmp_path / "agent-coder").mkdir()  # on cgroupfs, control files do not keep rmdir from working
    assert not MemoryCgroups(tmp_path).prepare("coder", None)
    assert not (tmp_path / "agent-coder").exists()


def test_busy_cgroup_is_left_in_place(tree: Path) -> None:
    MemoryCgroups(tree).remove("coder")  # rmdir fails (here: not empty): logged, not raised
    assert (tree / "agent-coder").is_dir()


def test_limit_is_shown_in_mib_or_kib() -> None:
    assert cgroups.kernel_kill_reason(256 * 1024 * 1024) == (
        "memory_max exceeded: killed by the kernel (cgroup memory.max 256 MiB)")
    assert cgroups.kernel_kill_reason(1536 * 1024).endswith("(cgroup memory.max 1536 KiB)")


# ---------------------------------------------------------------- how the supervisor reports it


def worker_exit(tree: Path, oom_kill_after: int) -> Slot:
    """A worker of agent `coder` (memory_max 1 MiB) placed in its cgroup, then SIGKILLed
    while the cgroup's memory.events counted `oom_kill_after` OOM kills."""
    supervisor = Supervisor(zygote=None, settings=DaemonConfig(), events=None,  # type: ignore[arg-type]
                            cgroups=MemoryCgroups(tree))
    slot = Slot(WorkerSpec(agent_id="coder", runtime="echo", workspace="/nonexistent",
                           memory_max=1024 * 1024))
    slot.wanted, slot.pid = True, 4242
    supervisor._confine(slot)
    (tree / "agent-coder" / "memory.events").write_text(f"oom {oom_kill_after}\noom_kill {oom_kill_after}\n")
    slot.exit_status = signal.SIGKILL  # as waitpid reports a death by SIGKILL
    supervisor._log_exit(slot)
    return slot


def test_worker_killed_by_the_kernel_says_memory_max_exceeded(tree: Path) -> None:
    slot = worker_exit(tree, oom_kill_after=1)
    assert written(tree / "agent-coder" / "cgroup.procs") == ["4242"]
    assert slot.last_error == "memory_max exceeded: killed by the kernel (cgroup memory.max 1 MiB)"


def test_other_sigkill_of_a_limited_worker_is_a_plain_kill(tree: Path) -> None:
    assert worker_exit(tree, oom_kill_after=0).last_error == "worker killed by SIGKILL"
