"""Agent runtimes: what turns a message into replies.  Each exposes `turn(Deliver)`, an
async iterator of `Say` (text and files).

Besides the built-in ones, `runtime = "python:<module>:<factory>"` names a runtime of the
operator's own: the worker (never the daemon) imports `<module>` and calls
`<factory>(home)` with the agent's `AgentHome`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Protocol

from hermesd.protocol import Deliver
from workers.runtimes.echo import EchoRuntime
from workers.runtimes.home import AgentHome, Say
from workers.runtimes.openai import OpenAIRuntime

PYTHON_PREFIX = "python:"


class Runtime(Protocol):
    """May also have `jumps_queue(message) -> bool`: True for a message to answer at once,
    beside the turn its session is running (hermes' /stop), instead of after it."""

    def turn(self, message: Deliver) -> AsyncIterator[Say]: ...


def load(home: AgentHome) -> Runtime:
    if home.spec.runtime == "echo":
        return EchoRuntime(home.spec)
    if home.spec.runtime == "openai":
        return OpenAIRuntime(home)
    if home.spec.runtime == "hermes":
        # imported here: it needs the `hermes` extra, which may not be installed
        from workers.runtimes.hermes import HermesRuntime

        return HermesRuntime(home)
    if home.spec.runtime.startswith(PYTHON_PREFIX):
        return _load_python(home)
    raise RuntimeError(f"unknown runtime {home.spec.runtime!r}")


def _load_python(home: AgentHome) -> Runtime:
    """Import the operator's module and build its runtime.  Each failure names the runtime
    value, so the worker_setup_failed line in `hermesctl status` says what to fix."""
    name = home.spec.runtime
    module_name, _, factory_name = name.removeprefix(PYTHON_PREFIX).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RuntimeError(f"runtime {name!r}: cannot import {module_name}: "
                           f"{type(exc).__name__}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise RuntimeError(f"runtime {name!r}: module {module_name} has no callable {factory_name}")
    runtime = factory(home)
    if not callable(getattr(runtime, "turn", None)):
        raise RuntimeError(f"runtime {name!r}: {factory_name}() returned "
                           f"{type(runtime).__name__}, which has no turn() method")
    return runtime
