"""send_file: attach a file from the workspace (or a shared path) to the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "send_file",
    "description": "Send a file to the user with your reply (a path in your workspace, e.g."
    " a report you wrote, or a file from inbox/). Images are shown as photos.",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}


async def run(args: dict[str, Any], context: ToolContext) -> str:
    path = context.workspace.resolve(str(args["path"]))
    if not path.is_file():
        return f"error: {args['path']} is not a file"
    context.files.append(str(path))
    return f"ok: {path.name} will be sent with your reply"
