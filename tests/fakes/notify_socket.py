"""The service manager's side of sd_notify(3): an AF_UNIX datagram socket that records
what a daemon reports, with the time (CLOCK_MONOTONIC) each message arrived.

Run by hand to watch a daemon's reports:
    python -m tests.fakes.notify_socket /tmp/notify.sock     (or @name: abstract namespace)
    NOTIFY_SOCKET=/tmp/notify.sock WATCHDOG_USEC=2000000 hermesd
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Self

Message = dict[str, str]


class NotifySocket:
    """Bound at `address`: a path, or `@name` for the abstract namespace."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: list[tuple[float, Message]] = []  # (arrival, fields), in order
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)

    def receive(self, timeout: float) -> Message | None:
        """The next message, waiting up to `timeout` seconds; None if none came."""
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0) -> Message:
        """Receive until a message has `key` (equal to `value`, if given); fail otherwise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            fields = self.receive(left)
            if fields is not None and key in fields and value in (None, fields[key]):
                return fields
        raise AssertionError(f"no {key}={value or '*'} within {timeout}s; got {self.keys()}")

    def drain(self, seconds: float) -> None:
        """Receive whatever arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.receive(left)

    def keys(self) -> list[str]:
        """Every message so far, as its keys joined with `+` (e.g. `READY+STATUS`)."""
        return ["+".join(fields) for _, fields in self.messages]


def main() -> None:
    with NotifySocket(sys.argv[1]) as notify:
        print(f"listening on {notify.address} (pid {os.getpid()})", flush=True)
        while True:
            fields = notify.receive(3600)
            if fields is not None:
                print(" ".join(f"{key}={value}" for key, value in fields.items()), flush=True)


if __name__ == "__main__":
    main()
