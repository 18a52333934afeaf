"""memory: curated long-term notes in memories/MEMORY.md (the agent's) and USER.md (about
the user), entries separated by a line holding `§`, each file capped in size, as Hermes
profiles keep them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.workspace import ENTRY_SEPARATOR, MEMORY_LIMITS, write_atomically

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "memory",
    "description": "Keep durable notes across conversations. target 'memory' = your own notes"
    " (facts, conventions, lessons); 'user' = what you know about the user. Notes appear in"
    " your instructions in every later turn.",
    "parameters": {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["add", "replace", "remove"]},
            "target": {"type": "string", "enum": ["memory", "user"]},
            "content": {"type": "string", "description": "the note (add, replace)"},
            "old_text": {"type": "string", "description": "part of the note to replace/remove"},
        },
        "required": ["action", "target"],
    },
}


def entries(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(ENTRY_SEPARATOR) if entry.strip()]


async def run(args: dict[str, Any], context: ToolContext) -> str:
    target = args["target"]
    if target not in MEMORY_LIMITS:
        raise ValueError("target must be 'memory' or 'user'")
    path = context.workspace.memory_file(target)
    notes = entries(path.read_text(encoding="utf-8") if path.exists() else "")
    action = args["action"]
    if action == "add":
        notes.append(str(args["content"]).strip())
    else:
        old = str(args.get("old_text", ""))
        matches = [i for i, note in enumerate(notes) if old and old in note]
        if len(matches) != 1:
            return f"error: old_text matches {len(matches)} notes; it must match exactly one"
        if action == "replace":
            notes[matches[0]] = str(args["content"]).strip()
        elif action == "remove":
            del notes[matches[0]]
        else:
            raise ValueError(f"unknown action {action!r}")
    text = ENTRY_SEPARATOR.join(notes)
    limit = MEMORY_LIMITS[target]
    if len(text) > limit:
        return (f"error: {path.name} would hold {len(text)} characters, over its {limit} limit;"
                " replace or remove notes first")
    write_atomically(path, text + ("\n" if text else ""))
    return f"ok: {path.name} has {len(notes)} notes ({len(text)}/{limit} characters)"
