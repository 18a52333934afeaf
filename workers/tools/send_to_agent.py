"""send_to_agent: ask another agent of this daemon a question and get its answer.

The parent checks `can_message` and bounds the chain of agents asking agents; the other
agent sees the question in its own session `agent:<this>:<other>`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "send_to_agent",
    "description": "Ask another agent a question; returns its answer.",
    "parameters": {
        "type": "object",
        "properties": {"agent": {"type": "string"}, "message": {"type": "string"}},
        "required": ["agent", "message"],
    },
}


async def run(args: dict[str, Any], context: ToolContext) -> str:
    context.asks += 1
    answer = await context.parent.ask(
        request_id=f"{context.message.msg_id}:{context.asks}",  # the same on a re-run
        to=str(args["agent"]), text=str(args["message"]), depth=context.message.depth + 1,
    )
    if answer.error:
        return f"error: {answer.error}"
    return answer.text or "(no answer)"
