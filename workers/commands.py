"""Chat commands the worker answers itself, without the model."""

from __future__ import annotations

import time

from hermesd.protocol import Deliver, WorkerSpec
from workers.sessions import Sessions

HELP = """\
/new or /reset  start a fresh conversation (the old one stays searchable)
/status         agent, model, session and token use
/help           this list"""


def handle(message: Deliver, spec: WorkerSpec, sessions: Sessions) -> str | None:
    """The answer to a command, or None if the text is not one of ours."""
    word = message.text.strip().split(maxsplit=1)[0].lower() if message.text.strip() else ""
    word = word.split("@", 1)[0]  # Telegram appends @botname in groups
    if word in ("/new", "/reset"):
        sessions.close(message.session_key)
        return "Started a new conversation."
    if word == "/status":
        info = sessions.info(sessions.current(message.session_key))
        model = spec.llm.model if spec.llm else "(none)"
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.started_at))
        return (f"agent: {spec.agent_id}\nmodel: {model}\nsession: {info.session_id} "
                f"({message.session_key}, since {started} UTC, {info.messages} messages)\n"
                f"tokens: {info.prompt_tokens} prompt, {info.completion_tokens} completion")
    if word == "/help":
        return HELP
    return None
