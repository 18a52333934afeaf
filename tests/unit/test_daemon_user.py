"""`[daemon] user` at start: only root can make workers someone else."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator

import pytest

from hermesd.config import loads
from hermesd.daemon import CannotDropPrivileges, check_user


@pytest.fixture
def as_nobody() -> Iterator[int]:
    """This process with the effective uid of nobody (the saved uid stays root, so it can
    come back): what `hermesd` started by an ordinary user is."""
    if os.geteuid() != 0:
        pytest.skip("switching the effective uid needs the test to run as root")
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("this system has no user 'nobody'")
    os.seteuid(uid)
    try:
        yield uid
    finally:
        os.seteuid(0)


def test_unprivileged_daemon_refuses_another_user(as_nobody: int) -> None:
    with pytest.raises(CannotDropPrivileges, match='user = "root" needs hermesd to be started as root'):
        check_user(loads('[daemon]\nuser = "root"\n'))


def test_unprivileged_daemon_accepts_its_own_user(as_nobody: int) -> None:
    check_user(loads('[daemon]\nuser = "nobody"\n'))
