"""The system prompt: who the agent is (SOUL.md), what it remembers (MEMORY.md, USER.md),
what it knows how to do (the skills index), and where it is talking.  Read afresh every
turn, so a memory written in one turn is in the next one's prompt."""

from __future__ import annotations

import time

from hermesd.protocol import Deliver, WorkerSpec
from workers.tools import skills
from workers.workspace import Workspace


def system_prompt(spec: WorkerSpec, workspace: Workspace, message: Deliver, trimmed: bool) -> str:
    parts = [workspace.read("SOUL.md").strip()]
    for title, name in (("Your notes (memory tool, target memory)", "MEMORY.md"),
                        ("About the user (memory tool, target user)", "USER.md")):
        text = workspace.read(f"memories/{name}").strip()
        parts.append(f"## {title}\n{text or '(empty)'}")
    index = skills.index(workspace.skills_dir)
    if index:
        listing = "\n".join(f"- {name}: {description}" for name, description in index)
        parts.append(f"## Skills (read one with the skills tool before using it)\n{listing}")
    context = [
        f"You are agent {spec.agent_id!r}.",
        f"Conversation: {message.session_key}. Now: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC.",
    ]
    if trimmed:
        context.append("Earlier messages of this conversation are not shown; session_search"
                       " finds them.")
    parts.append("## Context\n" + "\n".join(context))
    return "\n\n".join(part for part in parts if part)
