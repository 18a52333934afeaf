"""systemd's notify protocol (sd_notify(3)): one datagram per state change.

A no-op when NOTIFY_SOCKET is unset, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time

from hermesd import log


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        watchdog_usec = os.environ.get("WATCHDOG_USEC", "")
        watchdog_pid = os.environ.get("WATCHDOG_PID", str(os.getpid()))
        self.watchdog_interval = (
            int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() and watchdog_pid == str(os.getpid())
            else None
        )  # fmt: skip

    def notify(self, **fields: str) -> None:
        if self._socket is None or self._address is None:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.notify(ready="1", status=status)

    def reloading(self) -> None:
        self.notify(reloading="1", monotonic_usec=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def stopping(self) -> None:
        self.notify(stopping="1")

    def status(self, status: str) -> None:
        self.notify(status=status)

    def watchdog(self) -> None:
        self.notify(watchdog="1")
