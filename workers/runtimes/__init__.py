"""Agent runtimes: what turns a message into replies.  Each exposes `turn(Deliver)`, an
async iterator of `Say` (text and files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from hermesd.protocol import Deliver
from workers.runtimes.echo import EchoRuntime
from workers.runtimes.home import AgentHome, Say
from workers.runtimes.openai import OpenAIRuntime


class Runtime(Protocol):
    def turn(self, message: Deliver) -> AsyncIterator[Say]: ...


def load(home: AgentHome) -> Runtime:
    if home.spec.runtime == "echo":
        return EchoRuntime(home.spec)
    if home.spec.runtime == "openai":
        return OpenAIRuntime(home)
    raise RuntimeError(f"runtime {home.spec.runtime!r} is not available in this build")
