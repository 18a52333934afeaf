"""Conversations in state.db: one open session per session key, its messages, an FTS5 index.

`/new` closes the open session; the next message opens another.  History handed to the
model is trimmed to a character budget from the newest message back, never starting on a
tool result whose call was cut away.
"""

from __future__ import annotations

import time

import msgspec

from workers.llm import ChatMessage, ToolCall, Usage
from workers.statedb import StateDB

_TOOL_CALLS = msgspec.json.Encoder()
_DECODE_TOOL_CALLS = msgspec.json.Decoder(list[ToolCall])
HISTORY_ROWS = 400  # never read more than this per turn, however long the session


class SessionInfo(msgspec.Struct, frozen=True):
    session_id: int
    started_at: float
    messages: int
    prompt_tokens: int
    completion_tokens: int


class Hit(msgspec.Struct, frozen=True):
    session_key: str
    session_id: int
    role: str
    snippet: str
    created_at: float


class Sessions:
    def __init__(self, state: StateDB) -> None:
        self._state = state

    def current(self, session_key: str) -> int:
        """The open session of this key, opened now if there is none."""
        db = self._state.db
        row = db.execute(
            "SELECT id FROM sessions WHERE session_key = ? AND ended_at IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (session_key,),
        ).fetchone()
        if row is not None:
            return int(row[0])
        cursor = db.execute(
            "INSERT INTO sessions (session_key, started_at) VALUES (?, ?)", (session_key, time.time())
        )
        return int(cursor.lastrowid or 0)

    def close(self, session_key: str) -> None:
        self._state.db.execute(
            "UPDATE sessions SET ended_at = ? WHERE session_key = ? AND ended_at IS NULL",
            (time.time(), session_key),
        )

    def append(self, session_id: int, message: ChatMessage, msg_id: int) -> None:
        tool_calls = _TOOL_CALLS.encode(message.tool_calls).decode() if message.tool_calls else None
        self._state.db.execute(
            "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, name,"
            " msg_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, message.role, message.content, tool_calls, message.tool_call_id,
             message.name, msg_id, time.time()),
        )  # fmt: skip

    def forget_attempt(self, session_id: int, msg_id: int) -> None:
        """Drop what an interrupted earlier run of `msg_id` left in the session, so the
        re-run does not see its own half-finished turn."""
        self._state.db.execute(
            "DELETE FROM messages WHERE session_id = ? AND msg_id = ?", (session_id, msg_id)
        )

    def add_usage(self, session_id: int, usage: Usage) -> None:
        self._state.db.execute(
            "UPDATE sessions SET prompt_tokens = prompt_tokens + ?,"
            " completion_tokens = completion_tokens + ? WHERE id = ?",
            (usage.prompt_tokens, usage.completion_tokens, session_id),
        )

    def info(self, session_id: int) -> SessionInfo:
        row = self._state.db.execute(
            "SELECT started_at, prompt_tokens, completion_tokens,"
            " (SELECT count(*) FROM messages WHERE session_id = sessions.id)"
            " FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return SessionInfo(session_id, row[0], row[3], row[1], row[2])

    def history(self, session_id: int, budget_chars: int) -> tuple[list[ChatMessage], bool]:
        """The newest messages that fit in `budget_chars`, oldest first, and whether older
        ones were left out."""
        rows = self._state.db.execute(
            "SELECT role, content, tool_calls, tool_call_id, name, id FROM messages"
            " WHERE session_id = ? ORDER BY id DESC LIMIT ?",
            (session_id, HISTORY_ROWS),
        ).fetchall()
        kept: list[ChatMessage] = []
        used = 0
        oldest_kept = None
        for role, content, tool_calls, tool_call_id, name, row_id in rows:
            size = len(content or "") + len(tool_calls or "")
            if kept and used + size > budget_chars:
                break
            oldest_kept = row_id
            used += size
            kept.append(ChatMessage(
                role=role, content=content, tool_call_id=tool_call_id, name=name,
                tool_calls=_DECODE_TOOL_CALLS.decode(tool_calls) if tool_calls else None,
            ))  # fmt: skip
        kept.reverse()
        while kept and kept[0].role == "tool":  # its assistant call was cut off
            kept.pop(0)
        older = oldest_kept is not None and self._state.db.execute(
            "SELECT 1 FROM messages WHERE session_id = ? AND id < ? LIMIT 1", (session_id, oldest_kept)
        ).fetchone() is not None
        return kept, older or len(kept) < len(rows)

    def search(self, query: str, limit: int = 5, exclude_session: int | None = None) -> list[Hit]:
        """Full-text search over this agent's user and assistant messages, best first.
        Every word of `query` must occur; FTS syntax in it is taken literally."""
        words = [w.replace('"', '""') for w in query.split() if w.strip()]
        if not words:
            return []
        match = " ".join(f'"{word}"' for word in words)
        rows = self._state.db.execute(
            "SELECT s.session_key, m.session_id, m.role,"
            " snippet(messages_fts, 0, '[', ']', '…', 12), m.created_at"
            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN sessions s ON s.id = m.session_id"
            " WHERE messages_fts MATCH ? AND m.session_id IS NOT ?"
            " ORDER BY rank LIMIT ?",
            (match, exclude_session, limit),
        )
        return [Hit(*row) for row in rows]
