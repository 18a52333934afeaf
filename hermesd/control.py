"""The control socket: what `hermesctl status|reload|start|stop|restart|agents|routes` asks.

One JSON request per connection frame, one `ControlReply` back.  Every connection's
peer credentials are checked before anything is read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import psutil
from anyio.abc import SocketStream, TaskStatus

from hermesd import __version__, config, log, protocol, unixsock

if TYPE_CHECKING:
    from hermesd.service import Service
    from hermesd.slot import Slot


MAX_REQUEST = 64 * 1024  # bytes: every request is a few dozen; anything near this is hostile
REQUEST_TIMEOUT = 5.0  # seconds a connection may take to send its next whole request


class Control:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def serve(self, path: Path, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await unixsock.listen(path)
        task_status.started()
        await unixsock.serve(listener, self._connection, "control")

    async def _connection(self, stream: SocketStream) -> None:
        connection = unixsock.FramedConnection(stream, protocol.ControlRequest, protocol.ControlReply,
                                               max_frame=MAX_REQUEST)
        async with stream:
            refusal = unixsock.peer_refusal(stream)
            if refusal:
                log.warning("control_refused", reason=refusal)
                await connection.refuse(protocol.ControlReply(False, error=f"permission denied: {refusal}"))
                return
            try:
                while True:
                    with anyio.move_on_after(REQUEST_TIMEOUT) as idle:
                        request = await connection.receive()
                    if idle.cancelled_caught:
                        log.warning("control_timeout", timeout=REQUEST_TIMEOUT)
                        return  # a silent or trickling client holds nothing open for long
                    if request is None:
                        return
                    await connection.send(await self.handle(request))
            except protocol.ProtocolError as exc:
                log.warning("control_refused", reason=str(exc))
                await connection.send(protocol.ControlReply(False, error=str(exc)))

    async def handle(self, request: protocol.ControlRequest) -> protocol.ControlReply:
        try:
            if isinstance(request, protocol.StatusRequest):
                return protocol.ControlReply(True, await self.status())
            if isinstance(request, protocol.AgentsRequest):
                return protocol.ControlReply(True, self.agents())
            if isinstance(request, protocol.RoutesRequest):
                return protocol.ControlReply(True, self.routes(request.key))
            if isinstance(request, protocol.ReloadRequest):
                return protocol.ControlReply(True, await self.service.reload(request.wait))
            if isinstance(request, protocol.LogsRequest):
                return self.logs(request)
            return await self.agent_command(request)
        except config.ConfigError as exc:
            return protocol.ControlReply(False, error=str(exc))

    async def status(self) -> dict[str, Any]:
        service = self.service
        slots = list(service.supervisor.slots.values())
        memory = await anyio.to_thread.run_sync(_memory, [slot.pid for slot in slots])
        now = time.time()
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "state": service.state,
                "uptime": round(now - service.started_at, 3),
                "config": service.config_path or "<embedded default>",
                "summary": service.summary(),
                "spool": service.spool.fault or "ok",
                "memory_limits": service.memory_limits,
            },
            "platforms": {name: adapter.status() for name, adapter in service.adapters.items()},
            "agents": [_agent_status(slot, now, memory.get(slot.pid)) for slot in slots],
        }

    def agents(self) -> list[dict[str, Any]]:
        return [
            {"agent": slot.agent_id, "runtime": slot.spec.runtime, "state": slot.state,
             "workspace": slot.spec.workspace,
             "model": slot.spec.llm.model if slot.spec.llm else None}
            for slot in self.service.supervisor.slots.values()
        ]  # fmt: skip

    def routes(self, key: str | None) -> dict[str, Any]:
        router = self.service.messages.router
        data: dict[str, Any] = {
            "routes": [{"match": p.text, "agent": p.agent} for p in router.patterns],
            "default_agent": router.default_agent,
        }
        if key is not None:
            route = router.resolve(key)
            data["resolved"] = {"key": key, "agent": route.agent, "rule": route.rule}
        return data

    def logs(self, request: protocol.LogsRequest) -> protocol.ControlReply:
        if request.agent not in self.service.supervisor.slots:
            return protocol.ControlReply(False, error=f"no agent {request.agent!r}")
        return protocol.ControlReply(True, {"lines": log.recent(request.agent, request.after)})

    async def agent_command(self, request: protocol.AgentCommand) -> protocol.ControlReply:
        supervisor = self.service.supervisor
        if request.agent not in supervisor.slots:
            return protocol.ControlReply(False, error=f"no agent {request.agent!r}")
        if request.action == "start":
            supervisor.start(request.agent)
        elif request.action == "stop":
            await supervisor.stop(request.agent)
        else:
            await supervisor.restart(request.agent)
        log.info("agent_command", agent=request.agent, action=request.action)
        return protocol.ControlReply(True, {"agent": request.agent, "state": supervisor.slots[request.agent].state})


def _agent_status(slot: Slot, now: float, memory: tuple[int, int] | None) -> dict[str, Any]:
    return {
        "agent": slot.agent_id,
        "state": slot.state,
        "pid": slot.pid,
        "uptime": round(now - slot.started_at, 3) if slot.started_at else None,
        "restarts": slot.restarts,
        "rss": memory[0] if memory else None,
        "uss": memory[1] if memory else None,
        "queue": len(slot.inflight),
        "refused": slot.refused,
        "last_error": slot.last_error,
        "sandbox": _sandbox(slot.landlock),
    }


def _sandbox(landlock: int | None) -> str | None:
    """How the running worker is confined: "landlock v7", or "none" (path checks only)."""
    if landlock is None:
        return None
    return f"landlock v{landlock}" if landlock else "none"


def _memory(pids: list[int | None]) -> dict[int, tuple[int, int]]:
    """RSS and USS per pid (USS reads smaps: slow-ish, so this runs in a thread)."""
    result = {}
    for pid in pids:
        if pid is None:
            continue
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.Error, OSError):
            continue
        result[pid] = (info.rss, info.uss)
    return result
