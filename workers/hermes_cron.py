"""Hermes' own cron jobs (`<workspace>/cron/jobs.json`, kept by an imported profile) in a
hermes-runtime worker.

Hermes' scheduler (cron/scheduler.py) runs a due job with `run_job` and sends the answer
straight to a platform.  Neither fits a worker: the platforms belong to the daemon, and
`run_job` resolves its model and key from the profile's config.yaml and `.env`, which can
not name the worker's provider key (hermesd keeps keys out of workspaces, and `.env` is not
imported).  So hermes' job store decides *when* (`get_due_jobs`, `mark_job_run`: schedules,
catch-up after downtime, repeat counts stay hermes'), and a due job's prompt is handed to
the parent as a message in one of the agent's conversations (`Inject`), where it runs as an
ordinary hermes turn with the agent's model and tools; its answer arrives in that chat.

Which conversation: the one the job's origin names when this agent has had it (a Telegram
private chat `telegram:dm:<chat_id>`, or an origin chat id that is a hermesd session key:
a job the agent makes with hermes' cronjob tool records its conversation's key, see
workers.runtimes.hermes_tools), else the agent's most recently active conversation.  The
parent accepts an Inject only for a conversation routed to this agent before, so an agent
that has had none yet keeps its due jobs waiting (unmarked) until its first turn ends.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from workers import hermes_home
from workers.cron import Scheduler
from workers.runtimes.home import AgentHome

CHECK_INTERVAL = 60.0
"""The longest wait between looks at jobs.json.  A worker also looks when it starts, when
the next job is due, and after each turn (`changed`: the turn may have made or changed a
job through hermes' cronjob tool, or been the first conversation a job waited for)."""


class HermesCron(Scheduler):
    """The worker's scheduler for a hermes agent: hermesd's own cron table (which hermes
    agents do not fill: their `cron` tool is hermes' own) and, beside it, jobs.json."""

    def __init__(self, home: AgentHome) -> None:
        super().__init__(home.state, home.parent)
        self._home = home
        self._waiting: set[str] = set()  # jobs already logged as waiting for a conversation
        self._jobs_changed = anyio.Event()

    def changed(self) -> None:
        """A job changed or a turn ended (see CHECK_INTERVAL): look at jobs.json again too."""
        super().changed()
        self._jobs_changed.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(super().run)
            while True:
                self._jobs_changed = anyio.Event()
                await self.fire_hermes_due()
                wake = await anyio.to_thread.run_sync(next_due, time.time() + CHECK_INTERVAL)
                with anyio.move_on_after(max(0.0, wake - time.time())):
                    await self._jobs_changed.wait()

    async def fire_hermes_due(self) -> None:
        """Inject every due hermes job into its conversation and mark it run."""
        from cron import jobs  # hermes-agent; reads HERMES_HOME, which is the workspace

        try:
            due = await anyio.to_thread.run_sync(jobs.get_due_jobs)
        except Exception as exc:  # a broken jobs.json must not stop the worker
            self._home.log("warning", "hermes_cron_unreadable", error=f"{type(exc).__name__}: {exc}")
            return
        for job in due:
            job_id, name = str(job["id"]), str(job.get("name") or job["id"])
            if job.get("no_agent") or not job.get("prompt"):
                self._home.log("warning", "hermes_cron_skipped", job=job_id,
                               reason="script-only jobs are not run by hermesd")
                continue
            target = self.conversation(job)
            if target is None:
                if job_id not in self._waiting:
                    self._home.log("info", "hermes_cron_waiting", job=job_id,
                                   reason="the agent has had no conversation yet")
                self._waiting.add(job_id)
                continue
            self._waiting.discard(job_id)
            self._home.parent.inject(
                external_id=f"hermes-cron:{job_id}:{job.get('next_run_at')}",
                platform=target.split(":", 1)[0], session_key=target,
                text=f"[scheduled job {name}, {job.get('schedule_display', '')}] {job['prompt']}")
            self._home.log("info", "hermes_cron_fired", target, job=job_id)
            await anyio.to_thread.run_sync(jobs.mark_job_run, job_id, True)

    def conversation(self, job: dict[str, Any]) -> str | None:
        """The session key a job's prompt goes to (see the module docstring)."""
        known = self.recent_conversations()
        origin = job.get("origin") or {}
        chat = str(origin.get("chat_id") or "")
        wanted = [chat]
        if origin.get("platform") == "telegram" and chat.isdigit():
            wanted.append(f"telegram:dm:{chat}")
        for key in wanted:
            if key in known:
                return key
        return known[0] if known else None

    def recent_conversations(self) -> list[str]:
        """This agent's conversations (not those with other agents), most recent first:
        hermesd key -> hermes session id from state.db, last activity from hermes' db."""
        keys = dict(self._home.state.db.execute(
            "SELECT session_id, session_key FROM hermes_sessions "
            "WHERE session_key NOT LIKE 'agent:%'").fetchall())
        path = Path(self._home.workspace.root) / hermes_home.SESSION_DB
        if not keys or not path.exists():
            return []
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT session_id, max(timestamp) FROM messages "
                              "GROUP BY session_id ORDER BY 2 DESC").fetchall()
        return [keys[session_id] for session_id, _ in rows if session_id in keys]


def next_due(latest: float) -> float:
    """When the next enabled job in jobs.json is due, or `latest` if none is before it.
    Jobs already due are left out: they wait for a conversation (or are broken), and
    checking them again right away would change nothing."""
    from cron import jobs

    now, soonest = time.time(), latest
    try:
        stored = jobs.load_jobs()
    except Exception:  # reported by fire_hermes_due, which reads the same file
        return latest
    for job in stored:
        try:
            when = datetime.fromisoformat(job["next_run_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        if job.get("enabled", True) and now < when < soonest:
            soonest = when
    return soonest
