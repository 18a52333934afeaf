"""What a reload changes among the agents (DESIGN §6): only the agents whose spec changed
are restarted, added ones started, removed ones stopped; the others keep their process."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import msgspec

from hermesd.protocol import Deliver, WorkerSpec
from hermesd.slot import State
from hermesd.supervisor import Supervisor


class Diff(msgspec.Struct, frozen=True):
    added: list[str]
    removed: list[str]
    changed: list[str]


def diff(old: Mapping[str, WorkerSpec], new: Mapping[str, WorkerSpec]) -> Diff:
    return Diff(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        changed=sorted(a for a in new.keys() & old.keys() if new[a] != old[a]),
    )


async def apply(supervisor: Supervisor, changes: Diff, specs: Mapping[str, WorkerSpec],
                timeout: float) -> list[Deliver]:
    """Stop, restart and start agents as `changes` says (changed and removed ones in
    parallel); returns the removed agents' unanswered messages, for the caller to route
    again.  Waits up to `timeout` for the new processes to run."""
    orphans: list[Deliver] = []

    async def remove(agent_id: str) -> None:
        slot = await supervisor.remove(agent_id)
        orphans.extend(slot.inflight.values())

    async with anyio.create_task_group() as tasks:
        for agent_id in changes.changed:
            tasks.start_soon(supervisor.replace, specs[agent_id])
        for agent_id in changes.removed:
            tasks.start_soon(remove, agent_id)
    for agent_id in changes.added:
        supervisor.add(specs[agent_id])
        supervisor.start(agent_id)
    await until_started(supervisor, [a for a in changes.added + changes.changed if a in supervisor.slots],
                        timeout)
    return orphans


async def until_started(supervisor: Supervisor, agent_ids: list[str], timeout: float) -> None:
    """Wait up to `timeout` until each agent's worker runs or its supervisor gave up
    (fatal), so that what is reported next (READY=1, a reload's answer) is the outcome."""
    with anyio.move_on_after(timeout):
        while any(supervisor.slots[a].state in (State.STARTING, State.BACKOFF)
                  for a in agent_ids if a in supervisor.slots):
            await anyio.sleep(0.005)
