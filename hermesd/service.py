"""The running daemon: spool -> router -> supervisor, and replies back out to the platforms.

`Service.run` owns every long-lived task.  Like a classic arbiter, signal handlers only
queue (anyio's signal receiver) and the main loop acts: SIGCHLD reaps, SIGHUP reloads,
SIGTERM/SIGINT drain and stop.  Work that waits (reload, shutdown) runs as its own task so
the loop keeps reaping children meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from hermesd import attachments, cgroups, config, log, protocol
from hermesd.control import Control
from hermesd.daemon import share_state_dir
from hermesd.delivery import Deliveries, Finished
from hermesd.platforms import Adapter, agents, local
from hermesd.routing import Route, Router
from hermesd.sdnotify import Notifier
from hermesd.spool import Inbound, Incoming, Spool, SpoolUnavailable
from hermesd.supervisor import Slot, State, Supervisor
from hermesd.zygote import Zygote

PRUNE_AFTER = 7 * 86400  # keep acked messages this long to recognise repeated updates
BUSY_NOTICE_EVERY = 10.0  # seconds: one "busy" reply per conversation in this time
CHECKPOINT_INTERVAL = 1.0  # seconds between spool WAL checkpoints (and disk checks)


class Shutdown(Exception):
    """Raised inside the main loop to leave it with an exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


class Service:
    def __init__(self, cfg: config.Config, config_path: str | None, zygote: Zygote) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.zygote = zygote
        self.started_at = time.time()
        self.state = "starting"
        self.exit_code = 0
        self.router = _router(cfg)
        self.spool = Spool(Path(cfg.daemon.state_dir) / "spool.db")
        memory_cgroups, self.memory_limits = cgroups.from_proc({os.getpid(), zygote.pid})
        self.supervisor = Supervisor(zygote, cfg.daemon, self, memory_cgroups)
        self.notifier = Notifier()
        self.adapters: dict[str, Adapter] = {}
        self.deliveries = Deliveries(self.spool, self.adapters)
        self._unstored: set[int] = set()  # messages with a reply the spool could not take
        self._busy_noticed: dict[tuple[str, str], float] = {}  # conversation -> monotonic time
        self._reload_lock = anyio.Lock()
        self._task_group: TaskGroup | None = None
        runtime_dir = Path(cfg.daemon.runtime_dir)
        self.control_path = runtime_dir / "control.sock"
        self.agent_platform = agents.AgentPlatform(self.supervisor, self.spool)
        self.adapters[agents.NAME] = self.agent_platform
        # Bot libraries are imported only when configured: they cost the parent memory.
        if cfg.platforms.discord is not None:
            from hermesd.platforms import discord

            self.adapters[discord.NAME] = discord.DiscordPlatform(cfg.platforms.discord, self, self)
        if cfg.platforms.telegram is not None:
            from hermesd.platforms import telegram

            self.adapters[telegram.NAME] = telegram.TelegramPlatform(cfg.platforms.telegram, self, self)
        if cfg.platforms.local.enabled:
            local_path = Path(cfg.platforms.local.socket or runtime_dir / "local.sock")
            self.adapters[local.NAME] = local.LocalPlatform(local_path, self,
                                                            self.supervisor.worker_pids)

    # ---------------------------------------------------------------- main loop

    async def run(self) -> int:
        with anyio.open_signal_receiver(
            signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD
        ) as signals:
            async with anyio.create_task_group() as self._task_group:
                tg = self._task_group
                await tg.start(self.supervisor.run)
                await tg.start(self.deliveries.run)
                for spec in self.cfg.worker_specs().values():  # before any message can arrive
                    self.supervisor.add(spec)
                    self.supervisor.start(spec.agent_id)
                self._recover()
                for adapter in self.adapters.values():
                    await tg.start(adapter.serve)
                await tg.start(Control(self).serve, self.control_path)
                self.state = "running"
                self.notifier.ready(self.summary())
                log.info("daemon_ready", pid=os.getpid(), agents=len(self.supervisor.slots),
                         config=self.config_path or "<embedded default>")
                tg.start_soon(self._keepalive)
                tg.start_soon(self._upkeep)
                async for signum in signals:
                    self._handle_signal(signum, tg)
        self.spool.close()
        log.info("daemon_stopped", code=self.exit_code)
        return self.exit_code

    def _handle_signal(self, signum: int, tg: TaskGroup) -> None:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum == signal.SIGHUP:
            tg.start_soon(self._reload_quietly)
        elif self.state == "stopping":  # a second SIGTERM/SIGINT: no more waiting
            log.warning("stop_forced")
            self.supervisor.stop_now()
        else:
            tg.start_soon(self.shutdown)

    def reap(self) -> None:
        """Collect every exited child: workers, the zygote, and any orphan that was
        reparented to us (we are a child subreaper), so none stays a zombie."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.zygote.pid:
                self._zygote_exited(status)
            else:
                self.supervisor.child_exited(pid, status)

    def _zygote_exited(self, status: int) -> None:
        self.zygote.pid = -1
        if self.state != "stopping":
            log.error("zygote_died", status=status,
                      consequence="no worker can be started; stopping so the service manager restarts hermesd")
            self.exit_code = 1
            assert self._task_group is not None
            self._task_group.start_soon(self.shutdown)

    async def _keepalive(self) -> None:
        """Housekeeping on a timer: systemd watchdog pings, STATUS=, spool pruning."""
        interval = self.notifier.watchdog_interval or 30.0
        last_prune = 0.0
        while True:
            self.notifier.watchdog()
            self.notifier.status(self.summary())
            if time.monotonic() - last_prune > 3600 and self.spool.fault is None:
                try:
                    self.spool.prune(time.time() - PRUNE_AFTER)
                except SpoolUnavailable:
                    pass  # reported by _upkeep
                last_prune = time.monotonic()
            await anyio.sleep(interval)

    async def _upkeep(self) -> None:
        """Every second: check that the spool can take writes, and checkpoint its WAL.
        Checkpoints fsync, which would stall every message behind them if they ran in
        the event loop; they run in a thread instead."""
        while True:
            await anyio.sleep(CHECKPOINT_INTERVAL)
            self._check_spool()
            await anyio.to_thread.run_sync(self.spool.checkpoint)

    def _check_spool(self) -> None:
        """Notice the state dir filling up or turning read-only, and its recovery: while it
        cannot take writes, new messages are refused (accepting means storing first)."""
        before = self.spool.fault
        fault = self.spool.health(self.cfg.daemon.min_free_space)
        if fault and fault != before:
            log.error("spool_unwritable", error=fault, consequence="new messages are refused")
            self.notifier.status(self.summary())
        elif before and not fault:
            log.info("spool_writable", was=before)
            self.notifier.status(self.summary())
            self._resume()

    def _resume(self) -> None:
        """After the spool failed: record what went out meanwhile, then redeliver every
        message left unfinished (workers resend what they had already answered)."""
        try:
            self.deliveries.record_unrecorded()
            inflight = {msg_id for slot in self.supervisor.slots.values() for msg_id in slot.inflight}
            for entry in self.spool.pending():
                if entry.msg_id not in inflight:
                    self._unstored.discard(entry.msg_id)
                    self._dispatch(entry, self._route(entry))
        except SpoolUnavailable:
            pass  # failed again: the next check retries

    def summary(self) -> str:
        states: dict[str, int] = {}
        for slot in self.supervisor.slots.values():
            states[slot.state] = states.get(slot.state, 0) + 1
        agents = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        if self.spool.fault:
            return f"{agents or 'no agents'}; NOT ACCEPTING: {self.spool.fault}"
        return agents or "no agents"

    async def shutdown(self) -> None:
        """Drain: take no new messages, let running turns finish and their replies go out
        (together up to stop_timeout), stop every worker (each up to stop_timeout, then
        SIGKILL), then the zygote.  What is left unfinished stays in the spool for the
        next start."""
        if self.state == "stopping":
            return
        self.state = "stopping"
        self.notifier.stopping()
        log.info("daemon_stopping")
        for adapter in self.adapters.values():
            adapter.close_intake()
        with anyio.move_on_after(self.cfg.daemon.stop_timeout) as drain:
            while any(slot.inflight and slot.state is State.RUNNING
                      for slot in self.supervisor.slots.values()):
                await anyio.sleep(0.02)
            await self.deliveries.flushed()
        if drain.cancelled_caught:
            log.warning("stop_deadline_passed", timeout=self.cfg.daemon.stop_timeout,
                        consequence="unfinished messages are redelivered at the next start")
        async with anyio.create_task_group() as stops:
            for agent_id in self.supervisor.slots:
                stops.start_soon(self.supervisor.stop, agent_id)
        self.zygote.close()
        with anyio.move_on_after(self.cfg.daemon.stop_timeout):
            while self.zygote.pid > 0:
                await anyio.sleep(0.01)
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()

    # ---------------------------------------------------------------- messages in

    def receive(self, message: Incoming) -> tuple[Inbound, Route, bool]:
        """Raises SpoolUnavailable when the message could not be stored (the adapter tells
        the sender, or leaves the update with the platform to fetch again)."""
        if self.spool.fault is not None:
            raise SpoolUnavailable(self.spool.fault)
        route = self._route(message)
        entry, new = self.spool.put_inbound(message, route.agent)
        if new:
            if route.agent is not None and self.supervisor.queue_full(route.agent):
                self._refuse_busy(entry, route.agent)
            else:
                self._dispatch(entry, route)
        return entry, route, new

    def _refuse_busy(self, entry: Inbound, agent: str) -> None:
        """Backpressure: an agent whose queue is full gets no more, so a stuck agent cannot
        make the daemon hold an unbounded backlog.  Nothing is dropped silently: the message
        is finished with the error (a local client gets it per message), and the
        conversation gets a "busy" reply, at most one per BUSY_NOTICE_EVERY so that a flood
        of refusals does not become a flood of replies."""
        slot = self.supervisor.slots[agent]
        slot.refused += 1
        text = (f"{agent} is busy ({len(slot.inflight)} messages waiting, agent {slot.state}); "
                "this message was not passed on. Please send it again later.")
        conversation = (entry.platform, entry.session_key)
        now = time.monotonic()
        if now - self._busy_noticed.get(conversation, -BUSY_NOTICE_EVERY) < BUSY_NOTICE_EVERY:
            log.debug("message_refused", agent=agent, session=entry.session_key,
                      msg_id=entry.msg_id, reason="queue full", notice="already given")
            if self.spool.finish(entry.msg_id, error=text):
                self.deliveries.enqueue(entry.platform, Finished(entry.msg_id, entry.session_key, text))
            return
        if len(self._busy_noticed) > 1000:  # forget notices old enough not to matter
            self._busy_noticed = {k: t for k, t in self._busy_noticed.items()
                                  if now - t < BUSY_NOTICE_EVERY}
        self._busy_noticed[conversation] = now
        log.warning("message_refused", agent=agent, session=entry.session_key,
                    msg_id=entry.msg_id, reason="queue full", queue=len(slot.inflight))
        reply = self.spool.put_reply(msg_id=entry.msg_id, seq=0, agent=agent, text=text)
        self.spool.finish(entry.msg_id, error="busy")
        if reply is not None:
            self.deliveries.enqueue(entry.platform, reply)

    def route(self, session_key: str) -> Route:
        return self.router.resolve(session_key)

    def workspace_of(self, agent: str) -> Path | None:
        slot = self.supervisor.slots.get(agent)
        return Path(slot.spec.workspace) if slot else None

    def file_roots(self, agent: str) -> list[Path]:
        """Where files `agent` sends may come from (empty once the agent is gone)."""
        slot = self.supervisor.slots.get(agent)
        return attachments.roots(slot.spec) if slot else []

    def _route(self, message: Incoming) -> Route:
        if message.agent is None:
            return self.router.resolve(message.session_key)
        if message.agent in self.supervisor.slots:
            return Route(message.agent, "chosen by sender")
        return Route(None, f"no agent {message.agent!r}")

    def _dispatch(self, entry: Inbound, route: Route) -> None:
        if route.agent is None:
            log.warning("message_dropped", session=entry.session_key, msg_id=entry.msg_id,
                        reason=route.rule)
            if self.spool.finish(entry.msg_id, error=route.rule):
                self.deliveries.enqueue(entry.platform, Finished(entry.msg_id, entry.session_key, route.rule))
            return
        log.debug("message_routed", agent=route.agent, session=entry.session_key,
                  msg_id=entry.msg_id, rule=route.rule)
        self.supervisor.deliver(route.agent, protocol.Deliver(
            msg_id=entry.msg_id, platform=entry.platform, session_key=entry.session_key,
            text=entry.text, sender=entry.sender, depth=entry.depth,
        ))  # fmt: skip

    def on_request(self, slot: Slot, request: protocol.Inject | protocol.Ask) -> None:
        """A worker speaks unasked (cron) or asks another agent (send_to_agent)."""
        agent = slot.agent_id
        if isinstance(request, protocol.Inject):
            if not self.spool.has_conversation(request.platform, request.session_key, agent):
                log.warning("inject_refused", agent=agent, session=request.session_key,
                            reason="not a conversation of this agent")
                return
            try:
                self.receive(Incoming(
                    platform=request.platform, external_id=f"{agent}:{request.external_id}",
                    session_key=request.session_key, text=request.text, sender="cron",
                    agent=agent,
                ))  # fmt: skip
            except SpoolUnavailable as exc:
                log.error("inject_refused", agent=agent, session=request.session_key,
                          reason=str(exc))
            return
        refusal = agents.refusal(agent, slot.spec.can_message, request, self.supervisor.slots)
        if refusal:
            log.warning("ask_refused", agent=agent, to=request.to, reason=refusal)
            slot.send(protocol.Answer(request_id=request.request_id, error=refusal))
            return
        try:
            entry, _route, new = self.receive(Incoming(
                platform=agents.NAME, external_id=f"{agent}:{request.request_id}",
                session_key=f"agent:{agent}:{request.to}", text=request.text,
                sender=agents.sender(agent, request.request_id), agent=request.to,
                depth=request.depth,
            ))  # fmt: skip
        except SpoolUnavailable as exc:
            slot.send(protocol.Answer(request_id=request.request_id, error=str(exc)))
            return
        if not new:  # asked again after a restart: answer now if it was answered before
            self.agent_platform.answer_again(entry)

    def _recover(self) -> None:
        """After a restart: redeliver what no worker finished, resend what nobody got."""
        pending = self.spool.pending()
        for entry in pending:
            self._dispatch(entry, self._route(entry))
        undelivered = self.spool.undelivered()
        for reply in undelivered:
            self.deliveries.enqueue(reply.platform, reply)
        if pending or undelivered:
            log.info("spool_recovered", redelivered=len(pending), replies=len(undelivered))

    # ---------------------------------------------------------------- replies out

    def on_reply(self, slot: Slot, reply: protocol.Reply) -> None:
        text, files = reply.text, []
        for name in reply.files:
            try:
                files.append(attachments.check(slot.spec, name))
            except attachments.Refused as exc:
                log.warning("file_refused", agent=slot.agent_id, file=name, reason=str(exc))
                text += f"\n(file {name} not sent: {exc})"
        try:
            stored = self.spool.put_reply(msg_id=reply.msg_id, seq=reply.seq, agent=slot.agent_id,
                                          text=text, files=tuple(files))
        except SpoolUnavailable as exc:
            self._unstored.add(reply.msg_id)
            log.error("reply_not_stored", agent=slot.agent_id, msg_id=reply.msg_id, error=str(exc),
                      consequence="the message is delivered again once the spool takes writes")
            return
        if stored is not None:
            self.deliveries.enqueue(stored.platform, stored)

    def on_done(self, slot: Slot, message: protocol.Deliver, done: protocol.Done) -> None:
        if done.error:
            log.warning("turn_failed", agent=slot.agent_id, session=message.session_key,
                        msg_id=message.msg_id, error=done.error)
        if message.msg_id in self._unstored:  # a reply was lost on the way to the spool:
            if self.spool.fault is None:  # have the worker say it all again (its ledger has it)
                self._unstored.discard(message.msg_id)
                self.supervisor.deliver(slot.agent_id, message)
            return  # else it stays unfinished until _resume
        try:
            acked = self.spool.finish(message.msg_id, done.error)
        except SpoolUnavailable:
            return  # unfinished in the spool: _resume delivers it again
        if acked:
            self.deliveries.enqueue(message.platform, Finished(message.msg_id, message.session_key, done.error))

    def open_messages(self, platform: str, session_key: str) -> list[int]:
        return self.spool.open_messages(platform, session_key)

    def retry(self, platform: str, session_key: str) -> None:
        self.deliveries.retry(platform, session_key)

    def on_typing(self, slot: Slot, typing: protocol.Typing) -> None:
        for message in slot.inflight.values():
            if message.session_key == typing.session_key:
                adapter = self.adapters.get(message.platform)
                if adapter is not None:
                    adapter.typing(typing.session_key)
                return

    # ---------------------------------------------------------------- reload

    async def _reload_quietly(self) -> None:
        try:
            await self.reload(wait=False)
        except config.ConfigError:
            pass  # already logged; the old configuration keeps running

    async def reload(self, wait: bool) -> dict[str, list[str]]:
        """Validate the file again, then restart only the agents whose spec changed."""
        async with self._reload_lock:
            try:
                new = (config.load(self.config_path, running=self.cfg) if self.config_path
                       else config.embedded_default())
            except config.ConfigError as exc:
                log.error("reload_rejected", error=str(exc))
                raise
            share_state_dir(new)  # [daemon] user may have changed
            self.notifier.reloading()
            old_specs = {agent_id: slot.spec for agent_id, slot in self.supervisor.slots.items()}
            new_specs = new.worker_specs()
            diff = {
                "added": sorted(new_specs.keys() - old_specs.keys()),
                "removed": sorted(old_specs.keys() - new_specs.keys()),
                "changed": sorted(a for a in new_specs.keys() & old_specs.keys()
                                  if new_specs[a] != old_specs[a]),
            }
            self.cfg, self.router = new, _router(new)
            self.supervisor.settings = new.daemon
            log.configure(new.daemon.log_level)
            log.info("reload_applying", **{k: ",".join(v) for k, v in diff.items()})
            done = anyio.Event()
            assert self._task_group is not None
            self._task_group.start_soon(self._apply, diff, new_specs, done)
            if wait:
                await done.wait()
            return diff

    async def _apply(self, diff: dict[str, list[str]], specs: dict[str, protocol.WorkerSpec],
                     done: anyio.Event) -> None:
        try:
            orphans: list[protocol.Deliver] = []
            async with anyio.create_task_group() as changes:
                for agent_id in diff["changed"]:
                    changes.start_soon(self.supervisor.replace, specs[agent_id])
                for agent_id in diff["removed"]:
                    changes.start_soon(self._remove, agent_id, orphans)
            for agent_id in diff["added"]:
                self.supervisor.add(specs[agent_id])
                self.supervisor.start(agent_id)
            for message in orphans:  # a removed agent's messages go where the routes now say
                entry = self.spool.get(message.msg_id)
                if entry is not None:
                    self._dispatch(entry, self._route(entry))
            await self._await_started(diff["added"] + diff["changed"])
            self.notifier.ready(self.summary())
            log.info("reload_done", agents=len(self.supervisor.slots))
        finally:
            done.set()

    async def _remove(self, agent_id: str, orphans: list[protocol.Deliver]) -> None:
        slot = await self.supervisor.remove(agent_id)
        orphans.extend(slot.inflight.values())

    async def _await_started(self, agent_ids: list[str]) -> None:
        with anyio.move_on_after(self.cfg.daemon.stop_timeout):
            while any(self.supervisor.slots[a].state in (State.STARTING, State.BACKOFF)
                      for a in agent_ids if a in self.supervisor.slots):
                await anyio.sleep(0.005)


def _router(cfg: config.Config) -> Router:
    return Router(((r.match, r.agent, r.allowed_users, r.require_mention) for r in cfg.routes),
                  cfg.daemon.default_agent)

