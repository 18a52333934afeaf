"""A daemon started as root with `[daemon] user`: its workers run as that user, and
nothing else changes hands."""

from __future__ import annotations

import os
import pwd

import psutil
import pytest

from tests.harness import TWO_AGENTS, Daemon

NOBODY = "nobody"


def ids_of(process: psutil.Process) -> tuple[tuple[int, ...], tuple[int, ...], set[int]]:
    """Real/effective/saved uids and gids, and the supplementary groups (psutil has no
    call for those: /proc/<pid>/status does)."""
    with open(f"/proc/{process.pid}/status") as status:
        line = next(line for line in status if line.startswith("Groups:"))
    return tuple(process.uids()), tuple(process.gids()), {int(g) for g in line.split()[1:]}


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs the test to run as root")
    try:
        return pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip(f"this system has no user {NOBODY!r}")


def start_as(daemon: Daemon, user: str) -> None:
    daemon.root.chmod(0o711)  # the fixture's dir is 0700: the user must traverse it
    daemon.write_config(TWO_AGENTS, daemon=f'user = "{user}"\n')
    daemon.start()


def test_workers_run_as_the_configured_user_and_nothing_else_does(
    daemon: Daemon, nobody: pwd.struct_passwd
) -> None:
    start_as(daemon, NOBODY)
    children = daemon.children()
    zygote = [p for p in children if p.cmdline()[:1] == ["hermesd: zygote"]]
    workers = {p.pid for p in children} - {p.pid for p in zygote}
    assert len(zygote) == 1
    assert workers == {agent["pid"] for agent in daemon.agents().values()}
    for pid in workers:
        uids, gids, groups = ids_of(psutil.Process(pid))
        assert uids == (nobody.pw_uid,) * 3 and gids == (nobody.pw_gid,) * 3
        assert 0 not in groups
    for process in (psutil.Process(daemon.pid), zygote[0]):
        assert ids_of(process)[0] == (0, 0, 0)
    assert daemon.send("local:x", "hi", "--agent", "coder") == "coder: hi\n"


def test_workspaces_belong_to_the_user_and_the_daemons_files_to_root(
    daemon: Daemon, nobody: pwd.struct_passwd
) -> None:
    start_as(daemon, NOBODY)
    assert daemon.send("local:x", "hi", "--agent", "home") == "home: hi\n"
    workspace = daemon.state_dir / "agents/home"
    owners = {path.stat().st_uid for path in [workspace, *workspace.rglob("*")]}
    assert owners == {nobody.pw_uid}
    assert workspace.stat().st_mode & 0o777 == 0o700
    for shared in (daemon.state_dir, daemon.state_dir / "agents"):
        info = shared.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, nobody.pw_gid, 0o750)
    assert (daemon.state_dir / "spool.db").stat().st_uid == 0
    assert daemon.socket.stat().st_uid == 0


def test_a_workspace_imported_as_root_is_handed_to_the_user(
    daemon: Daemon, nobody: pwd.struct_passwd
) -> None:
    skills = daemon.state_dir / "agents/coder/skills/notes"
    skills.mkdir(parents=True)
    (skills / "SKILL.md").write_text("---\nname: notes\n---\n")
    start_as(daemon, NOBODY)
    assert (skills / "SKILL.md").stat().st_uid == nobody.pw_uid
    assert skills.stat().st_uid == nobody.pw_uid

