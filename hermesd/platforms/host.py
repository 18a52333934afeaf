"""The platform adapters' tasks, each in a cancel scope of its own, so that a reload can
stop one platform and start it again with its new settings while the others keep their
connections.

The adapters dict (by platform name) is shared with `Messages` and `Deliveries`, which
look an adapter up for each reply: it is the one place that says which adapter is the
platform now.  A platform being restarted is out of the dict: its replies wait in the
outbox meanwhile and are sent by its replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup, TaskStatus

from hermesd import config, log
from hermesd.delivery import Deliveries
from hermesd.platforms import Adapter, local

if TYPE_CHECKING:
    from hermesd.messages import Messages

CONFIGURABLE = ("telegram", "discord", "local")
"""The [platforms.*] tables, in the order the adapters are built."""


def changed(old: config.Platforms, new: config.Platforms, adapters: Mapping[str, Adapter]) -> dict[str, str]:
    """The platforms to restart, and why: their table differs (one added or removed
    counts), or their token file now holds another token than the one the bot uses."""
    reasons = {}
    for name in CONFIGURABLE:
        settings = _table(new, name)
        if _table(old, name) != settings:
            reasons[name] = "settings changed"
        elif _rotated(settings, getattr(adapters.get(name), "token", None)):
            reasons[name] = "token changed"
    return reasons


def _table(platforms: config.Platforms, name: str) -> object:
    """A platform's settings, None when it is off (local's other keys then do not matter)."""
    table = getattr(platforms, name)
    return None if isinstance(table, config.LocalConfig) and not table.enabled else table


def _rotated(settings: object, running: str | None) -> bool:
    if running is None or not isinstance(settings, (config.TelegramConfig, config.DiscordConfig)):
        return False
    try:
        return settings.read_token() != running
    except config.ConfigError:
        return False  # unreadable now: the bot keeps the token it has rather than go without


def build(name: str, cfg: config.Config, messages: Messages,
          previous: Adapter | None = None) -> Adapter | None:
    """The adapter `cfg` asks for, or None when the platform is off.  `previous` is the one
    it replaces, for what must carry over (Telegram's update offset).  Bot libraries are
    imported only when configured: they cost the parent memory."""
    if name == "telegram" and cfg.platforms.telegram is not None:
        from hermesd.platforms import telegram

        before = previous if isinstance(previous, telegram.TelegramPlatform) else None
        return telegram.TelegramPlatform(cfg.platforms.telegram, messages, messages, before)
    if name == "discord" and cfg.platforms.discord is not None:
        from hermesd.platforms import discord

        return discord.DiscordPlatform(cfg.platforms.discord, messages, messages)
    if name == "local" and cfg.platforms.local.enabled:
        path = Path(cfg.platforms.local.socket or Path(cfg.daemon.runtime_dir) / "local.sock")
        return local.LocalPlatform(path, messages)
    return None


class _Running:
    """One adapter's task: the scope that stops it, and the event that says it has."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()


class PlatformHost:
    def __init__(self, adapters: dict[str, Adapter], deliveries: Deliveries,
                 rebuild: Callable[[str, Adapter | None], Adapter | None]) -> None:
        self._adapters = adapters
        self._deliveries = deliveries
        self._rebuild = rebuild  # name, the adapter replaced -> its replacement as configured now
        self._running: dict[str, _Running] = {}
        self._lock = anyio.Lock()  # one reload's restarts at a time, in order
        self._intake_open = True
        self._tasks: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the adapters' tasks until cancelled."""
        async with anyio.create_task_group() as self._tasks:
            task_status.started()
            await anyio.sleep_forever()

    async def start_all(self) -> None:
        """Start every adapter in the dict (at daemon start), each once it listens."""
        for adapter in list(self._adapters.values()):
            await self._start(adapter)

    def close_intake(self) -> None:
        """The daemon is draining: no platform takes new messages, not even one a reload
        is starting right now."""
        self._intake_open = False
        for adapter in self._adapters.values():
            adapter.close_intake()

    async def restart(self, reasons: Mapping[str, str], grace: float) -> None:
        """Stop each platform named (with why) and start it again as the configuration now
        says (or not at all, if its table is gone), all in parallel.  Replies on their way
        out get `grace` seconds before they are cancelled and left for the replacement."""
        if not reasons:
            return
        async with self._lock, anyio.create_task_group() as tasks:
            for name, reason in reasons.items():
                tasks.start_soon(self._replace, name, reason, grace)

    async def _replace(self, name: str, reason: str, grace: float) -> None:
        old = self._adapters.pop(name, None)  # from now on its replies wait in the outbox
        if old is not None:
            await self._deliveries.release(name, grace)
            await self._stop(name)
        new = self._rebuild(name, old)
        if new is not None:
            try:
                await self._start(new)
            except OSError as exc:  # e.g. a local socket path it cannot bind
                log.error("platform_failed", name=name, error=str(exc),
                          consequence="off until a reload changes its table, or hermesd restarts")
                return
            self._deliveries.resend(name)
        event = "platform_restarted" if old and new else "platform_started" if new else "platform_stopped"
        log.info(event, name=name, reason=reason)

    async def _start(self, adapter: Adapter) -> None:
        assert self._tasks is not None
        await self._tasks.start(self._serve, adapter)
        self._adapters[adapter.name] = adapter
        if not self._intake_open:
            adapter.close_intake()

    async def _serve(self, adapter: Adapter, *, task_status: TaskStatus[None]) -> None:
        running = self._running[adapter.name] = _Running()
        try:
            with running.scope:
                await adapter.serve(task_status=task_status)
        finally:
            running.stopped.set()

    async def _stop(self, name: str) -> None:
        """Cancel the adapter's task and wait until it has closed its connections."""
        running = self._running.pop(name, None)
        if running is not None:
            running.scope.cancel()
            await running.stopped.wait()
