"""cron: schedule a prompt to run later or repeatedly in this conversation."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workers import cron

if TYPE_CHECKING:
    from workers.tools import ToolContext

SCHEMA = {
    "name": "cron",
    "description": "Schedule a prompt for yourself; its answer is posted in this conversation."
    ' Schedules: "every 30m", "daily 09:00" (UTC), "in 2h", "at 2026-12-01T09:00".',
    "parameters": {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["create", "list", "remove"]},
            "schedule": {"type": "string"},
            "prompt": {"type": "string", "description": "what to do when it fires"},
            "id": {"type": "integer", "description": "job to remove"},
        },
        "required": ["action"],
    },
}


async def run(args: dict[str, Any], context: ToolContext) -> str:
    action = args["action"]
    db = context.state.db
    if action == "create":
        try:
            job = context.scheduler.add(context.message.platform, context.message.session_key,
                                        str(args["schedule"]), str(args["prompt"]))
        except cron.BadSchedule as exc:
            return f"error: {exc}"
        return f"ok: job {job} scheduled ({args['schedule']})"
    if action == "list":
        rows = db.execute("SELECT id, schedule, next_run, session_key, prompt FROM cron_jobs ORDER BY id")
        lines = [f"- job {job}: {schedule}, next {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(when))} UTC,"
                 f" in {key}: {prompt}" for job, schedule, when, key, prompt in rows]
        return "\n".join(lines) or "no scheduled jobs"
    if action == "remove":
        removed = db.execute("DELETE FROM cron_jobs WHERE id = ?", (int(args["id"]),)).rowcount
        context.scheduler.changed()
        return f"ok: job {args['id']} removed" if removed else f"error: no job {args['id']}"
    raise ValueError(f"unknown action {action!r}")
