"""hermesd.sdnotify on its own: what reaches a notify socket, and when the watchdog is on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermesd.sdnotify import Notifier
from tests.fakes.notify_socket import NotifySocket


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[NotifySocket]:
    with NotifySocket(str(tmp_path / "notify.sock")) as socket_:
        yield socket_


def test_watchdog_interval_is_half_the_timeout_when_meant_for_us() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 15.0


@pytest.mark.parametrize("environ", [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"},
                                     {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}])
def test_no_watchdog_unless_set_and_meant_for_us(environ: dict[str, str]) -> None:
    assert Notifier(environ).watchdog_interval is None


def test_unchanged_status_is_not_sent_again(manager: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.address})
    notifier.ready("2 running")
    notifier.status("2 running")
    notifier.status("1 running, 1 fatal (cs)")
    manager.drain(0.1)
    assert [fields for _, fields in manager.messages] == [
        {"READY": "1", "STATUS": "2 running"}, {"STATUS": "1 running, 1 fatal (cs)"}]


def test_a_line_break_in_a_status_cannot_add_a_field(manager: NotifySocket) -> None:
    Notifier({"NOTIFY_SOCKET": manager.address}).status("disk error\nREADY=1")
    assert manager.wait_for("STATUS", timeout=1) == {"STATUS": "disk error READY=1"}

