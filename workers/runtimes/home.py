"""Everything an agent's runtime works with inside its worker, built once at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from hermesd import protocol
from workers.bridge import Parent
from workers.cron import Scheduler
from workers.sessions import Sessions
from workers.statedb import StateDB
from workers.tools import ToolContext
from workers.workspace import Workspace


class Say(NamedTuple):
    """One reply as a runtime produces it: text, and files to send along (workspace paths)."""

    text: str
    files: tuple[str, ...] = ()


@dataclass
class AgentHome:
    spec: protocol.WorkerSpec
    workspace: Workspace
    state: StateDB
    sessions: Sessions
    parent: Parent
    scheduler: Scheduler
    send: Callable[[protocol.WorkerFrame], None]

    def log(self, level: str, event: str, session_key: str = "", **fields: str) -> None:
        self.send(protocol.Log(level=level, event=event, session_key=session_key,  # type: ignore[arg-type]
                               fields=fields))

    def tool_context(self, message: protocol.Deliver, session_id: int) -> ToolContext:
        return ToolContext(spec=self.spec, workspace=self.workspace, state=self.state,
                           sessions=self.sessions, parent=self.parent, message=message,
                           session_id=session_id, scheduler=self.scheduler)
