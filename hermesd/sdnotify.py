"""systemd's notify protocol (sd_notify(3)): one datagram per state change.

Written here rather than taken from a library because it is one `sendto` on an AF_UNIX
datagram socket.  A no-op when NOTIFY_SOCKET is unset, so the daemon runs the same
outside systemd.  Only the main process may notify (systemd's default NotifyAccess=main),
and only the daemon creates a Notifier: the zygote gets none of these variables.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from hermesd import log


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._status: str | None = None  # the STATUS= last sent
        self._failing = False  # a failed send was logged; say nothing more until one works
        self.watchdog_interval = _watchdog_interval(environ)

    def notify(self, **fields: str) -> None:
        """Send `KEY=value` lines in one datagram (a value loses any line break)."""
        if self._socket is None or self._address is None:
            return
        message = "\n".join(f"{key.upper()}={' '.join(value.splitlines())}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failing:
                log.warning("sd_notify_failed", error=str(exc))
            self._failing = True
        else:
            self._failing = False

    def ready(self, status: str) -> None:
        self._status = status
        self.notify(ready="1", status=status)

    def reloading(self) -> None:
        """RELOADING=1 with the CLOCK_MONOTONIC time it began, which systemd 253+ requires
        to tell this reload from an older one."""
        self.notify(reloading="1", monotonic_usec=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def stopping(self) -> None:
        self.notify(stopping="1")

    def status(self, status: str) -> None:
        """STATUS=, sent only when it differs from the last one sent."""
        if status != self._status:
            self._status = status
            self.notify(status=status)

    def watchdog(self) -> None:
        self.notify(watchdog="1")


def _address(notify_socket: str) -> bytes | None:
    """The socket address in NOTIFY_SOCKET: a path, or `@name` in the abstract namespace."""
    if notify_socket.startswith("@"):
        return b"\0" + os.fsencode(notify_socket[1:])
    if notify_socket.startswith("/"):
        return os.fsencode(notify_socket)
    if notify_socket:
        log.warning("sd_notify_unsupported", address=notify_socket,
                    consequence="nothing is reported to the service manager")
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, as sd_watchdog_enabled(3) advises, if the
    watchdog is set and meant for this process (WATCHDOG_PID unset or ours)."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or pid not in ("", str(os.getpid())):
        return None
    return int(usec) / 2e6
