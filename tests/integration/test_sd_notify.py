"""What hermesd tells systemd over NOTIFY_SOCKET (sd_notify(3)), as a service manager
receives it: a real daemon, and the manager's datagram socket from tests/fakes."""

from __future__ import annotations

import os
import time

from tests.fakes.notify_socket import NotifySocket
from tests.harness import TWO_AGENTS, Daemon, wait_for

WATCHDOG_USEC = 600_000  # pings expected every 0.3 s


def start(daemon: Daemon, notify: NotifySocket, agents: str = TWO_AGENTS, **env: str) -> None:
    daemon.write_config(agents)
    daemon.start(wait=False, env={"NOTIFY_SOCKET": notify.address, **env})


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def after(notify: NotifySocket, key: str) -> list[str]:
    """The keys of the messages that arrived after the first one holding `key`."""
    keys = notify.keys()
    first = next(i for i, message in enumerate(keys) if key in message.split("+"))
    return keys[first + 1:]


def test_ready_is_sent_once_the_agents_run_with_their_count(daemon: Daemon, notify: NotifySocket) -> None:
    start(daemon, notify)
    ready = notify.wait_for("READY", "1")
    assert ready["STATUS"] == "2 running"
    assert daemon.all_running()


def test_abstract_notify_socket_gets_ready(daemon: Daemon) -> None:
    with NotifySocket(f"@hermesd-test-{os.getpid()}-{daemon.root.name}") as notify:
        start(daemon, notify)
        assert notify.wait_for("READY", "1")["STATUS"] == "2 running"


def test_reload_reports_reloading_then_ready(daemon: Daemon, notify: NotifySocket) -> None:
    start(daemon, notify)
    notify.wait_for("READY", "1")
    daemon.write_config(TWO_AGENTS + '[agents.third]\nruntime = "echo"\n')
    began = monotonic_usec()
    assert daemon.ctl("reload", "--wait").returncode == 0
    ended = monotonic_usec()
    reloading = notify.wait_for("RELOADING", "1")
    assert began <= int(reloading["MONOTONIC_USEC"]) <= ended  # the manager's clock, during the reload
    assert notify.wait_for("READY", "1")["STATUS"] == "3 running"


def test_watchdog_is_pinged_at_half_the_watchdog_timeout(daemon: Daemon, notify: NotifySocket) -> None:
    start(daemon, notify, WATCHDOG_USEC=str(WATCHDOG_USEC))
    notify.wait_for("READY", "1")
    notify.drain(10 * WATCHDOG_USEC / 2e6)
    pings = [arrived for arrived, fields in notify.messages if fields.get("WATCHDOG") == "1"]
    assert len(pings) >= 5, notify.keys()
    mean_interval = (pings[-1] - pings[0]) / (len(pings) - 1)
    assert 0.75 < mean_interval / (WATCHDOG_USEC / 2e6) < 1.35, mean_interval


def test_watchdog_meant_for_another_pid_is_not_pinged(daemon: Daemon, notify: NotifySocket) -> None:
    start(daemon, notify, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    notify.wait_for("READY", "1")
    notify.drain(1.0)  # 10 pings' worth
    assert not any("WATCHDOG" in fields for _, fields in notify.messages)


def test_status_names_the_fatal_agent(daemon: Daemon, notify: NotifySocket) -> None:
    blocker = daemon.root / "not-a-dir"
    blocker.write_text("a file where the workspace should be")
    start(daemon, notify, TWO_AGENTS + f'[agents.broken]\nruntime = "echo"\nworkspace = "{blocker}"\n')
    notify.wait_for("STATUS", "2 running, 1 fatal (broken)")


def test_stopping_is_sent_at_sigterm_and_ends_the_pings(daemon: Daemon, notify: NotifySocket) -> None:
    start(daemon, notify, WATCHDOG_USEC="200000")
    notify.wait_for("WATCHDOG", "1")
    assert daemon.stop() == 0
    notify.drain(0.2)  # what was sent before the exit is queued on the socket
    assert "STOPPING" in notify.keys()
    assert not [keys for keys in after(notify, "STOPPING") if "WATCHDOG" in keys or "READY" in keys]


def test_dead_zygote_ends_the_pings_and_fails_the_service(daemon: Daemon, notify: NotifySocket) -> None:
    """Without a zygote no worker can be replaced: the watchdog is no longer fed and
    hermesd exits 1, so that Restart=on-failure starts a whole new one."""
    start(daemon, notify, WATCHDOG_USEC="200000")
    notify.wait_for("WATCHDOG", "1")
    zygote = next(p for p in daemon.children() if p.cmdline()[0] == "hermesd: zygote")
    zygote.kill()
    assert daemon.process is not None
    wait_for(lambda: daemon.process.poll() is not None, what="hermesd exit")  # type: ignore[union-attr]
    assert daemon.process.returncode == 1
    notify.drain(0.2)
    assert not [keys for keys in after(notify, "STOPPING") if "WATCHDOG" in keys]
