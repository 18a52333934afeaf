"""skills: procedures the agent wrote down, one `skills/<name>/SKILL.md` each, opening with
a frontmatter block (`name:`, `description:`) as Hermes skills do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.workspace import write_atomically

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "skills",
    "description": "List, read, create or edit your skills (reusable procedures).",
    "parameters": {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["list", "view", "create", "edit"]},
            "name": {"type": "string", "description": "skill name: letters, digits, - and _"},
            "description": {"type": "string", "description": "one line (create, edit)"},
            "content": {"type": "string", "description": "the procedure, markdown (create, edit)"},
        },
        "required": ["action"],
    },
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FRONTMATTER = re.compile(r"\A---\n(.*?)\n---\n?", re.S)
MAX_SKILL = 20_000


def frontmatter(text: str) -> dict[str, str]:
    """The `key: value` lines of a leading `---` block (enough YAML for name/description)."""
    match = _FRONTMATTER.match(text)
    fields: dict[str, str] = {}
    for line in match[1].splitlines() if match else ():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def index(skills_dir: Path) -> list[tuple[str, str]]:
    """(name, description) of every skill, sorted: the index the system prompt carries."""
    found = []
    for path in sorted(skills_dir.glob("*/SKILL.md")):
        try:
            fields = frontmatter(path.read_text(encoding="utf-8")[:4096])
        except (OSError, UnicodeDecodeError):
            continue
        found.append((fields.get("name", path.parent.name), fields.get("description", "")))
    return found


async def run(args: dict[str, Any], context: ToolContext) -> str:
    action = args["action"]
    skills_dir: Path = context.workspace.skills_dir
    if action == "list":
        return "\n".join(f"- {name}: {text}" for name, text in index(skills_dir)) or "no skills yet"
    name = str(args.get("name", ""))
    if not _NAME.fullmatch(name):
        raise ValueError("name must be letters, digits, - and _ (at most 64)")
    path = context.workspace.resolve(f"skills/{name}/SKILL.md", write=action != "view")
    if action == "view":
        return path.read_text(encoding="utf-8") if path.exists() else f"error: no skill {name!r}"
    if action == "create" and path.exists():
        return f"error: skill {name!r} exists; use edit"
    if action == "edit" and not path.exists():
        return f"error: no skill {name!r}; use create"
    if action not in ("create", "edit"):
        raise ValueError(f"unknown action {action!r}")
    description = str(args.get("description") or frontmatter(
        path.read_text(encoding="utf-8") if path.exists() else "").get("description", ""))
    text = f"---\nname: {name}\ndescription: {description}\n---\n\n{args.get('content', '')}\n"
    if len(text) > MAX_SKILL:
        return f"error: a skill may hold at most {MAX_SKILL} characters"
    write_atomically(path, text)
    return f"ok: skill {name!r} saved"
