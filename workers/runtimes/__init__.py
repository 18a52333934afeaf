"""Agent runtimes: what turns a message into replies.  Each exposes `turn(Deliver)`, an
async iterator of reply texts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from hermesd.protocol import Deliver, WorkerSpec
from workers.runtimes.echo import EchoRuntime


class Runtime(Protocol):
    def turn(self, message: Deliver) -> AsyncIterator[str]: ...


def load(spec: WorkerSpec) -> Runtime:
    if spec.runtime == "echo":
        return EchoRuntime(spec)
    raise RuntimeError(f"runtime {spec.runtime!r} is not available in this build")
