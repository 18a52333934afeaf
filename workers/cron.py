"""Scheduled prompts.  A job belongs to the conversation it was created in; when due, the
worker hands its prompt to the parent as a message in that conversation (`Inject`), so it
runs as an ordinary turn and its answer arrives where the job was made.

Schedules: `every 30m` (s, m, h, d), `daily 09:00` (UTC), `in 2h` and `at 2026-12-01T09:00`
(UTC unless an offset is given) once.  Runs missed while the agent was down are made up
by one run, not by one per missed slot, and the schedule continues from now.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import anyio

from workers.bridge import Parent
from workers.statedb import StateDB

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"(every|in)\s+(\d+)\s*([smhd])")
_DAILY = re.compile(r"daily\s+(\d{1,2}):(\d{2})")
MIN_INTERVAL = 5  # seconds: a tighter loop would only burn model calls
IDLE_WAKE = 60.0


class BadSchedule(ValueError):
    pass


def next_run(schedule: str, now: float) -> float | None:
    """When `schedule` next fires after `now`; None for a one-shot that has fired."""
    text = schedule.strip().lower()
    if match := _EVERY.fullmatch(text):
        seconds = int(match[2]) * _UNITS[match[3]]
        if seconds < MIN_INTERVAL:
            raise BadSchedule(f"intervals under {MIN_INTERVAL}s are not allowed")
        return now + seconds
    if match := _DAILY.fullmatch(text):
        hour, minute = int(match[1]), int(match[2])
        if hour > 23 or minute > 59:
            raise BadSchedule(f"no such time of day: {match[1]}:{match[2]}")
        today = datetime.fromtimestamp(now, UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
        return (today if today.timestamp() > now else today + timedelta(days=1)).timestamp()
    if text.startswith("at "):
        try:
            when = datetime.fromisoformat(schedule.strip()[3:].strip())
        except ValueError:
            raise BadSchedule(f"not an ISO date and time: {schedule[3:].strip()!r}") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    raise BadSchedule('use "every 30m", "daily 09:00", "in 2h" or "at 2026-12-01T09:00"')


def is_recurring(schedule: str) -> bool:
    text = schedule.strip().lower()
    return text.startswith(("every", "daily"))


class Scheduler:
    def __init__(self, state: StateDB, parent: Parent) -> None:
        self._state = state
        self._parent = parent
        self._changed = anyio.Event()

    def changed(self) -> None:
        """A job was added or removed: recompute when to wake."""
        self._changed.set()

    def add(self, platform: str, session_key: str, schedule: str, prompt: str) -> int:
        now = time.time()
        first = next_run(schedule, now)
        cursor = self._state.db.execute(
            "INSERT INTO cron_jobs (session_key, platform, schedule, prompt, next_run, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session_key, platform, schedule, prompt, first, now),
        )
        self.changed()
        return int(cursor.lastrowid or 0)

    async def run(self) -> None:
        while True:
            self._changed = anyio.Event()
            wake = self.fire_due(time.time())
            with anyio.move_on_after(max(0.0, wake - time.time())):
                await self._changed.wait()

    def fire_due(self, now: float) -> float:
        """Send every due job to the parent; returns when the next one is due."""
        if not self._state.path.exists():
            return now + IDLE_WAKE  # no state.db yet, so no jobs: do not create one
        db = self._state.db
        due = db.execute(
            "SELECT id, session_key, platform, schedule, prompt, next_run FROM cron_jobs"
            " WHERE next_run <= ?", (now,)
        ).fetchall()
        for job_id, session_key, platform, schedule, prompt, when in due:
            self._parent.inject(
                external_id=f"cron:{job_id}:{int(when)}", platform=platform,
                session_key=session_key, text=f"[scheduled job {job_id}, {schedule}] {prompt}",
            )  # fmt: skip
            if is_recurring(schedule):
                db.execute("UPDATE cron_jobs SET next_run = ? WHERE id = ?",
                           (next_run(schedule, now), job_id))
            else:
                db.execute("DELETE FROM cron_jobs WHERE id = ?", (job_id,))
        row = db.execute("SELECT min(next_run) FROM cron_jobs").fetchone()
        return min(row[0], now + IDLE_WAKE) if row[0] is not None else now + IDLE_WAKE
