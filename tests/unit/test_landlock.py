"""workers.landlock: which rights each ABI restricts, and which paths a worker is given."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hermesd import protocol
from workers import landlock as ll

V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM


@pytest.mark.parametrize("abi, handled, scopes", [
    (1, V1, 0),
    (2, V1 | ll.REFER, 0),
    (3, V1 | ll.REFER | ll.TRUNCATE, 0),
    (4, V1 | ll.REFER | ll.TRUNCATE, 0),  # ABI 4 adds TCP rules only; the network stays open
    (5, V1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV, 0),
    (6, V1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV, ll.SCOPE_SIGNAL | ll.SCOPE_ABSTRACT_UNIX_SOCKET),
    (7, V1 | ll.REFER | ll.TRUNCATE | ll.IOCTL_DEV, ll.SCOPE_SIGNAL | ll.SCOPE_ABSTRACT_UNIX_SOCKET),
])  # fmt: skip
def test_each_abi_restricts_what_it_knows(abi: int, handled: int, scopes: int) -> None:
    assert (ll.handled_access(abi), ll.scopes(abi)) == (handled, scopes)


def test_every_granted_right_is_one_the_newest_abi_handles() -> None:
    for access in (ll.READ, ll.READ_EXECUTE, ll.READ_WRITE, ll.DEVICE_READ, ll.DEVICE_READ_WRITE):
        assert access & ~ll.handled_access(7) == 0


def test_writable_places_are_never_executable() -> None:
    assert not ll.READ_WRITE & (ll.EXECUTE | ll.MAKE_CHAR | ll.MAKE_BLOCK | ll.IOCTL_DEV)


def _spec(workspace: Path, *shared: protocol.SharedPathSpec) -> protocol.WorkerSpec:
    return protocol.WorkerSpec(agent_id="a", runtime="echo", workspace=str(workspace),
                               shared_paths=shared)


def test_workspace_and_shared_paths_get_their_modes(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "a", protocol.SharedPathSpec("/srv/docs", "ro"),
                 protocol.SharedPathSpec("/srv/drop", "rw"))
    granted = dict(ll.rules(spec)[0])
    assert granted[str(tmp_path / "a")] == ll.READ_WRITE
    assert (granted["/srv/docs"], granted["/srv/drop"]) == (ll.READ, ll.READ_WRITE)
    assert granted["/usr"] == granted["/etc"] == granted[sys.prefix] == ll.READ_EXECUTE
    assert granted["/dev/null"] == ll.DEVICE_READ_WRITE and granted["/dev/urandom"] == ll.DEVICE_READ
    assert granted["/proc/self"] == ll.READ and "/proc" not in granted


def test_readable_path_holding_the_workspace_is_left_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An import path above the state directory would expose every agent's workspace."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    granted, skipped = ll.rules(_spec(tmp_path / "agents" / "a"))
    assert str(tmp_path) not in dict(granted) and skipped == [str(tmp_path)]


def test_kernel_without_landlock_is_a_warning_not_a_failure() -> None:
    [warning] = ll.Confinement(0, unavailable="no Landlock").warnings()
    assert (warning.level, warning.event) == ("warning", "landlock_unavailable")
    assert ll.Confinement(7).warnings() == []
