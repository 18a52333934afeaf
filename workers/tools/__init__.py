"""The tools an agent's model may call.  Each module has `SCHEMA` (an OpenAI function
definition) and `run(args, context) -> str`; the text goes back to the model.  A tool
never raises into the turn: bad arguments and refused paths become an error text the
model can read and correct."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import msgspec

from hermesd.protocol import Deliver, WorkerSpec
from workers.bridge import Parent
from workers.cron import Scheduler
from workers.sessions import Sessions
from workers.statedb import StateDB
from workers.workspace import PathDenied, Workspace


@dataclass
class ToolContext:
    """What a tool may use during one turn."""

    spec: WorkerSpec
    workspace: Workspace
    state: StateDB
    sessions: Sessions
    parent: Parent
    message: Deliver
    session_id: int
    scheduler: Scheduler
    asks: int = field(default=0)  # send_to_agent calls so far in this turn (request ids)
    files: list[str] = field(default_factory=list)  # send_file: to go out with the reply


from workers.tools import (  # noqa: E402
    cron,
    memory,
    send_file,
    send_to_agent,
    session_search,
    skills,
)

TOOLS: dict[str, ModuleType] = {
    "memory": memory, "session_search": session_search, "skills": skills,
    "cron": cron, "send_to_agent": send_to_agent, "send_file": send_file,
}  # fmt: skip


def definitions(enabled: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": TOOLS[name].SCHEMA} for name in enabled if name in TOOLS]


async def call(name: str, arguments: str, context: ToolContext) -> str:
    if name not in TOOLS or name not in context.spec.tools:
        return f"error: no tool named {name!r}"
    try:
        args = msgspec.json.decode(arguments or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        return str(await TOOLS[name].run(args, context))
    except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
        return f"error: bad arguments for {name}: {exc}"
    except PathDenied as exc:
        return f"error: not allowed: {exc}"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
