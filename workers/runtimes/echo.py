"""The echo runtime: answers `"<agent id>: <text>"`.  For demos, tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from hermesd.protocol import Deliver, WorkerSpec
from workers.runtimes.home import Say


class EchoRuntime:
    def __init__(self, spec: WorkerSpec) -> None:
        self._prefix = f"{spec.agent_id}: "
        self._delay = spec.echo_delay

    async def turn(self, message: Deliver) -> AsyncIterator[Say]:
        if self._delay:
            await anyio.sleep(self._delay)
        yield Say(self._prefix + message.text)
