"""Structured one-line logs: `level=info event=worker_spawned agent=coder pid=4242`.

One line per event, key=value pairs (values with spaces are quoted), or one JSON object
(`log_format = "json"`), written to stderr, or to `log_file` (then stderr is pointed at
it too, so tracebacks land beside the lines; `reopen` after a rotation).  Under systemd
(JOURNAL_STREAM set) each line starts with its syslog priority (`<6>`) and carries no
timestamp, since journald adds both; elsewhere it starts with a UTC timestamp.  Registered
secrets, and anything shaped like a Telegram bot token, are masked in every line before it
is written: a token must never reach a log.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from collections import deque
from typing import Any, TextIO

LEVELS = {"debug": 7, "info": 6, "warning": 4, "error": 3}
_TOKEN_SHAPES = re.compile(r"(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}")
"""A Telegram bot token, also glued to "bot" in a Bot API URL (no \\b there)."""
_secrets: set[str] = set()
_threshold = LEVELS["info"]
KEPT_PER_AGENT = 200
"""Recent lines kept per agent for `hermesctl logs` (the journal or log_file has them all)."""
_recent: dict[str, deque[tuple[int, str]]] = {}
_numbers = itertools.count(1)


def _stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected; it is inherited
    by children whose stderr may point elsewhere, so compare it with our actual stderr."""
    try:
        device, inode = os.environ["JOURNAL_STREAM"].split(":")
        stat = os.fstat(2)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (KeyError, ValueError, OSError):
        return False


_journald = _stderr_is_journal()
_out: TextIO = sys.stderr
_json = False
_file: str | None = None


def configure(level: str, format: str = "logfmt", file: str | None = None) -> None:
    """Apply the [daemon] log settings (at start and at every reload).  Raises OSError when
    `file` cannot be opened; the previous destination stays."""
    global _threshold, _json, _file
    _threshold, _json = LEVELS[level], format == "json"
    if file != _file:
        _file = file
        reopen()


def reopen() -> None:
    """Open `log_file` again (SIGUSR1, after logrotate moved it) and point stderr at it, so
    the daemon's own tracebacks, and those of processes it starts later, go there too."""
    global _journald
    if _file is None:
        return
    fd = os.open(_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.dup2(fd, 2)  # dup2 clears close-on-exec on fd 2: children inherit it
    finally:
        os.close(fd)
    _journald = False


def add_secret(secret: str) -> None:
    """Mask `secret` in every later line (tokens read from files or the environment)."""
    if len(secret) >= 8:
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "[redacted]")
    return _TOKEN_SHAPES.sub("[redacted]", text)


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def emit(level: str, event: str, **fields: Any) -> None:
    priority = LEVELS.get(level, 6)
    if priority > _threshold:
        return
    stamp = "" if _journald else _now()
    if _json:
        record = {"time": stamp, "level": level, "event": event} if stamp else {"level": level, "event": event}
        record.update((key, str(value)) for key, value in fields.items() if value != "")
        line = redact(json.dumps(record, ensure_ascii=False))
    else:
        body = " ".join(f"{key}={_quote(value)}" for key, value in fields.items() if value != "")
        line = redact(f"level={level} event={event} {body}".rstrip())
        line = f"{stamp} {line}" if stamp else line
    agent = fields.get("agent")
    if agent:
        kept = _recent.setdefault(str(agent), deque(maxlen=KEPT_PER_AGENT))
        kept.append((next(_numbers), line if stamp else f"{_now()} {line}"))
    if _journald:
        line = f"<{priority}>{line}"
    try:
        _out.write(line + "\n")
        _out.flush()
    except (OSError, ValueError):
        pass  # a closed or full stderr must not take the daemon down


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def recent(agent: str, after: int = 0) -> list[tuple[int, str]]:
    """The kept lines about `agent` numbered above `after`, oldest first (each with its
    time, under journald too)."""
    return [entry for entry in _recent.get(agent, ()) if entry[0] > after]


def debug(event: str, **fields: Any) -> None:
    emit("debug", event, **fields)


def info(event: str, **fields: Any) -> None:
    emit("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    emit("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    emit("error", event, **fields)
