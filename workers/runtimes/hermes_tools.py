"""hermesd's own tools and file sending for hermes agents.

hermes-agent calls a tool's handler synchronously, in the turn's thread or in one of the
threads it runs concurrent tool calls in, while hermesd's tools (workers/tools) are
coroutines of the worker's event loop that need the turn's `ToolContext`.  So each turn
binds a `Turn` (its context and a token for the loop) into the turn thread's context
variables, which hermes copies into its tool threads; a handler finds it there and runs
hermesd's tool on the loop (`anyio.from_thread.run`).

hermes' cronjob tool records as a job's origin the conversation that hermes' session
variables (gateway/session_context.py) name; hermes_cron delivers the job there.  Those
variables are set only around that tool's calls: hermes' gateway sets them for a whole
turn, but then hermes would hold dangerous terminal commands for an approval through the
gateway, which hermesd does not have.

A hermes agent attaches files by writing `MEDIA:<path>` lines in its answer (hermes'
gateway sends them); here each such line goes through hermesd's send_file, so the same
confinement to the workspace and shared paths applies, and the parent's size limit.
"""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from workers import tools
from workers.tools import ToolContext, send_file
from workers.workspace import PathDenied

TOOLSETS = {"send_to_agent": "hermesd_send_to_agent", "send_file": "hermesd_send_file"}
"""hermesd's tools registered in hermes' tool registry, each in a toolset of its own so
that hermesd.toml's `tools` enables them one by one."""

HINT = ("You are answering in a chat (Telegram, Discord or a local terminal) through hermesd. "
        "To send a file with your answer, put MEDIA:/absolute/path/to/file on a line of its "
        "own; only files in your workspace or its shared paths can be sent.")
"""hermes' prompt line for the platform "hermesd" (its own platforms each have one, which
is where the model learns about MEDIA lines); config.yaml's `platform_hints.hermesd` can
still replace or extend it, as for any hermes platform."""

MEDIA = re.compile(r"""\s*(?P<outer>[`"']?)MEDIA:\s*"""
                   r"""(?:(?P<q>[`"'])(?P<quoted>[^`"']+)(?P=q)|(?P<bare>[^\s`"']+))(?P=outer)\s*""")
"""A line that is a file to send, as hermes agents write it: the tag in backticks or
quotes or not, its path in quotes when it has spaces."""


@dataclass(frozen=True)
class Turn:
    """What the tool handlers of one running turn need from the event loop's side."""

    context: ToolContext
    token: anyio.lowlevel.EventLoopToken

    @classmethod
    def here(cls, context: ToolContext) -> Turn:
        """The turn of `context`; call it on the event loop."""
        return cls(context, anyio.lowlevel.current_token())


_current: ContextVar[Turn | None] = ContextVar("hermesd_turn", default=None)


def register() -> None:
    """Put hermesd's tools into hermes' registry, and its platform hint into hermes' list
    of them, unless the zygote did (a worker inherits
    its registry; registering again would only drop the tool schemas it cached).  Safe
    without a turn: a handler called outside one answers with an error."""
    import model_tools  # noqa: F401  imports hermes' own tools first, cronjob's among them
    from agent.prompt_builder import PLATFORM_HINTS
    from tools.registry import registry

    PLATFORM_HINTS.setdefault("hermesd", HINT)

    for name, toolset in TOOLSETS.items():
        if not _ours(registry.get_entry(name), _handle):
            registry.register(name=name, toolset=toolset, schema=tools.TOOLS[name].SCHEMA,
                              handler=partial(_handle, name))
    _adapt_cronjob()


def _ours(entry: Any, handler: Any) -> bool:
    """Whether a registry entry is one this module registered with `handler`."""
    return entry is not None and getattr(entry.handler, "func", None) is handler


def _adapt_cronjob() -> None:
    """Register hermes' cronjob tool again, recording the conversation as its jobs'
    origin (see the module docstring) and without its availability check: the tool
    offers itself only where hermes' gateway or CLI runs the scheduler (by environment
    variables that also change how commands are approved); here hermes_cron runs it."""
    from tools.registry import registry

    entry = registry.get_entry("cronjob")
    if entry is None or _ours(entry, _with_origin):
        return  # no such tool in this hermes-agent, or done already (by the zygote)
    fields = {slot: getattr(entry, slot) for slot in entry.__slots__ if slot != "check_fn"}
    registry.register(**{**fields, "handler": partial(_with_origin, entry.handler)})


def _with_origin(handler: Any, args: dict[str, Any], **kwargs: Any) -> Any:
    """hermes' cronjob handler, in a copy of the context where hermes' session variables
    name the current turn's conversation."""
    from gateway.session_context import set_session_vars

    turn = _current.get()
    if turn is None:
        return handler(args, **kwargs)
    message = turn.context.message

    def call() -> Any:
        set_session_vars(platform=message.platform, chat_id=message.session_key,
                         user_id=message.sender)
        return handler(args, **kwargs)

    return copy_context().run(call)


def bind(turn: Turn) -> None:
    """Make `turn` the current one in the calling thread: the turn's, whose context hermes
    copies into the threads it runs tools in."""
    _current.set(turn)


def _handle(name: str, args: dict[str, Any], **_: Any) -> str:
    """A hermes tool handler: hermesd's tool `name`, run on the worker's event loop."""
    turn = _current.get()
    if turn is None:
        return json.dumps({"error": f"{name} is available only in a hermesd conversation"})
    return anyio.from_thread.run(tools.call, name, json.dumps(args), turn.context, token=turn.token)


async def attach_media(text: str, context: ToolContext) -> str:
    """`text` without its MEDIA lines, whose files join `context.files` as send_file
    would add them; a file that may not be sent leaves a note instead.  Lines inside
    code blocks are text, not files."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else MEDIA.fullmatch(line)
        if match is None:
            kept.append(line)
            continue
        path = os.path.expanduser(match["quoted"] or match["bare"])  # HOME is the workspace
        try:
            outcome = await send_file.run({"path": path}, context)
        except PathDenied as exc:
            outcome = f"error: {exc}"
        if outcome.startswith("error: "):
            kept.append(f"(file not sent: {outcome.removeprefix('error: ')})")
    return "\n".join(kept).strip()
