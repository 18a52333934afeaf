"""The hermes runtime's chat commands, apart from the runtime's state: what a command word
is, how /model and /memory answer, and the commands that work on a conversation's hermes
session (/undo, /retry, /title).  Hermes' own slash commands live in its gateway, which
hermesd does not run, so the runtime answers these itself (workers/runtimes/hermes.py)."""

from __future__ import annotations

import re
from typing import Any

HELP = """\
/new or /reset  start a fresh conversation (the old one stays searchable)
/status         agent, model, session and message count
/model [NAME]   show this conversation's model, or switch it until the agent restarts
/memory         what the agent remembers (memories/MEMORY.md and USER.md)
/stop           interrupt the answer being written in this conversation
/retry          ask your last message again (its old answer is dropped)
/undo [N]       take back your last N messages and their answers (default 1)
/title [TEXT]   show or set this conversation's title (session_search finds it)
/SKILL [TEXT]   use the skill named SKILL (skills/SKILL/SKILL.md) for TEXT
/help           this list"""

MODEL_NAME = re.compile(r"[\w.:/@+-]{1,200}")
"""What a provider's model id looks like (gpt-4o, anthropic/claude-sonnet-4, qwen3:8b)."""

ENTRY_CHARS = 300
MEMORY_CHARS = 3500
"""/memory stays one chat message (Telegram's limit is 4096 characters)."""


def command_word(text: str) -> str:
    """"/Model@bot gpt-4o" -> "/model" (Telegram appends @botname in groups)."""
    words = text.strip().split(maxsplit=1)
    return words[0].lower().split("@", 1)[0] if words else ""


def argument(text: str) -> str:
    words = text.strip().split(maxsplit=1)
    return words[1].strip() if len(words) > 1 else ""


def model_reply(current: str, default: str, wanted: str) -> tuple[str | None, str]:
    """(the model to switch to or None, the reply) for `/model [wanted]`."""
    if not wanted:
        note = "" if current == default else f" (hermesd.toml says {default})"
        return None, f"model: {current}{note}\nSwitch with /model NAME."
    if not MODEL_NAME.fullmatch(wanted):
        return None, f"⚠️ {wanted[:60]!r} is not a model name; the model stays {current}."
    return wanted, (f"This conversation now uses {wanted}, until the agent restarts "
                    f"(then {default}, from hermesd.toml). The provider says at the next "
                    "message whether it knows this model.")


def memory_reply(memory: list[str], user: list[str]) -> str:
    """Both memory files' entries, each cut to ENTRY_CHARS and the whole to MEMORY_CHARS."""
    if not memory and not user:
        return "No memories yet."
    parts = []
    for title, entries in (("MEMORY.md (notes)", memory), ("USER.md (about you)", user)):
        parts.append(f"{title}: {len(entries)} entries")
        parts += [f"- {_cut(entry, ENTRY_CHARS)}" for entry in entries]
    text = "\n".join(parts)
    if len(text) > MEMORY_CHARS:
        text = text[:MEMORY_CHARS] + "\n… (cut; the full files are in the agent's memories/)"
    return text


def _cut(entry: str, limit: int) -> str:
    entry = " ".join(entry.split())
    return entry if len(entry) <= limit else entry[:limit - 1] + "…"


def undo(db: Any, session_id: str, wanted: str) -> str:
    """/undo [N]: N user messages and everything after them leave the conversation (kept
    in the database, inactive, as hermes' own /undo does)."""
    if wanted and not (wanted.isdigit() and int(wanted) > 0):
        return f"⚠️ /undo takes a number of messages, not {wanted[:40]!r}."
    count = int(wanted or 1)
    recent = db.list_recent_user_messages(session_id, limit=count)
    if not recent:
        return "Nothing to undo in this conversation."
    target = db.rewind_to_message(session_id, recent[-1]["id"])["target_message"]
    return f"Took back {len(recent)} message(s), from: {_cut(str(target['content']), 200)}"


def rewind_last(db: Any, session_id: str) -> str | None:
    """/retry: the last user message, taken out of the conversation with what followed it
    (to be asked again), or None when there is none."""
    recent = db.list_recent_user_messages(session_id, limit=1)
    if not recent:
        return None
    return str(db.rewind_to_message(session_id, recent[0]["id"])["target_message"]["content"])


def title(db: Any, session_id: str, wanted: str) -> str:
    if not wanted:
        current = db.get_session_title(session_id)
        return f"title: {current}" if current else "This conversation has no title; set one with /title TEXT."
    try:
        found = db.set_session_title(session_id, wanted)
    except ValueError as exc:  # taken by another session, or not a valid title
        return f"⚠️ {exc}"
    if not found:
        return "This conversation has not started yet: say something first."
    return f"title: {db.get_session_title(session_id)}"
