"""session_search: full-text search over this agent's own past conversations."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "session_search",
    "description": "Search your past conversations (all sessions of this agent) for words.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 20}},
        "required": ["query"],
    },
}


async def run(args: dict[str, Any], context: ToolContext) -> str:
    hits = context.sessions.search(str(args["query"]), int(args.get("limit", 5)),
                                   exclude_session=context.session_id)
    if not hits:
        return "no matches in earlier conversations"
    return "\n".join(
        f"- {time.strftime('%Y-%m-%d %H:%M', time.gmtime(hit.created_at))} {hit.session_key}"
        f" (session {hit.session_id}, {hit.role}): {hit.snippet}"
        for hit in hits
    )
