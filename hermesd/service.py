"""The running daemon's lifecycle: start, signals, reaping, upkeep, reload and stop.

What happens to messages is `Messages`' (hermesd/messages.py); replies leave through
`Deliveries` (hermesd/delivery.py).  `Service.run` owns every long-lived task.  Like a
classic arbiter, signal handlers only queue (anyio's signal receiver) and the main loop
acts: SIGCHLD reaps, SIGHUP reloads, SIGUSR1 reopens the log file, SIGTERM drains and
stops, SIGINT stops at once.  Work that waits (reload, shutdown) runs as its own task so
the loop keeps reaping children meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskGroup

from hermesd import cgroups, config, log, protocol, reconfigure
from hermesd.control import Control
from hermesd.daemon import share_state_dir
from hermesd.delivery import Deliveries
from hermesd.messages import Messages
from hermesd.platforms import Adapter, agents, host
from hermesd.routing import Router
from hermesd.sdnotify import Notifier
from hermesd.slot import State
from hermesd.spool import Spool, SpoolUnavailable
from hermesd.supervisor import Supervisor
from hermesd.zygote import Zygote

PRUNE_AFTER = 7 * 86400  # keep acked messages this long to recognise repeated updates
CHECKPOINT_INTERVAL = 1.0  # seconds between spool WAL checkpoints (and disk checks, STATUS=)
SUMMARY_ORDER = (State.RUNNING, State.STARTING, State.BACKOFF, State.STOPPING, State.STOPPED, State.FATAL)


class Service:
    def __init__(self, cfg: config.Config, config_path: str | None, zygote: Zygote) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.zygote = zygote
        self.started_at = time.time()
        self.state = "starting"
        self.exit_code = 0
        self.spool = Spool(Path(cfg.daemon.state_dir) / "spool.db")
        self.adapters: dict[str, Adapter] = {}
        self.deliveries = Deliveries(self.spool, self.adapters)
        self.messages = Messages(self.spool, self.deliveries, self.adapters, _router(cfg))
        memory_cgroups, self.memory_limits = cgroups.from_proc({os.getpid(), zygote.pid})
        self.supervisor = Supervisor(zygote, cfg.daemon, self.messages, memory_cgroups)
        agent_platform = agents.AgentPlatform(self.supervisor, self.spool)
        self.messages.bind(self.supervisor, agent_platform)
        self.notifier = Notifier()
        self._reload_lock = anyio.Lock()
        self._reported_fault: str | None = None  # the spool fault last logged
        self._task_group: TaskGroup | None = None
        runtime_dir = Path(cfg.daemon.runtime_dir)
        self.control_path = runtime_dir / "control.sock"
        self.adapters[agents.NAME] = agent_platform
        for name in host.CONFIGURABLE:
            adapter = self._build_adapter(name)
            if adapter is not None:
                self.adapters[name] = adapter
        self.platforms = host.PlatformHost(self.adapters, self.deliveries, self._build_adapter)

    def _build_adapter(self, name: str, previous: Adapter | None = None) -> Adapter | None:
        """The platform's adapter as the configuration now says (None: it is off)."""
        return host.build(name, self.cfg, self.messages, previous)

    # ---------------------------------------------------------------- main loop

    async def run(self) -> int:
        with anyio.open_signal_receiver(
            signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD
        ) as signals:
            async with anyio.create_task_group() as self._task_group:
                tg = self._task_group
                await tg.start(self.supervisor.run)
                await tg.start(self.deliveries.run)
                for spec in self.cfg.worker_specs().values():  # before any message can arrive
                    self.supervisor.add(spec)
                    self.supervisor.start(spec.agent_id)
                self.messages.recover()
                await tg.start(self.platforms.run)
                await self.platforms.start_all()
                await tg.start(Control(self).serve, self.control_path)
                tg.start_soon(self._announce_ready)
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
        elif signum == signal.SIGUSR1:
            self._reopen_log()
        elif self.state == "stopping" or signum == signal.SIGINT:  # no more waiting
            log.warning("stop_forced", signal=signal.Signals(signum).name)
            self.supervisor.stop_now()
            tg.start_soon(self.shutdown)
        else:
            tg.start_soon(self.shutdown)

    def _reopen_log(self) -> None:
        try:
            log.reopen()
            log.info("log_reopened", file=self.cfg.daemon.log_file or "<stderr>")
        except OSError as exc:
            log.error("log_file_failed", file=self.cfg.daemon.log_file, error=str(exc))

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

    async def _announce_ready(self) -> None:
        """READY=1 once every agent's first worker runs or has given up (bounded by
        stop_timeout, as a reload waits), so the STATUS= it carries is the outcome of the
        start.  A task of its own: the main loop must go on reaping meanwhile."""
        await reconfigure.until_started(self.supervisor, list(self.supervisor.slots),
                                        self.cfg.daemon.stop_timeout)
        if self.state != "starting":  # stopped before it was ready
            return
        self.state = "running"
        self.notifier.ready(self.summary())
        log.info("daemon_ready", pid=os.getpid(), agents=len(self.supervisor.slots),
                 config=self.config_path or "<embedded default>")

    def healthy(self) -> bool:
        """What WATCHDOG=1 vouches for: the event loop turns (the caller runs in it),
        the daemon is up and not stopping, and the zygote is there to replace workers.
        A full or read-only state dir is not a fault a restart would cure: STATUS= says it."""
        return self.state == "running" and self.zygote.pid > 0

    async def _keepalive(self) -> None:
        """Housekeeping on a timer: systemd watchdog pings while healthy, spool pruning.
        Pinged from the event loop, never from a thread, so a wedged loop stops the pings."""
        interval = self.notifier.watchdog_interval or 30.0
        last_prune = 0.0
        while True:
            if self.notifier.watchdog_interval is not None and self.healthy():
                self.notifier.watchdog()
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
            self.notifier.status(self.summary())  # sent when it changed
            await anyio.to_thread.run_sync(self.spool.checkpoint)

    def _check_spool(self) -> None:
        """Notice the state dir filling up or turning read-only, and its recovery: while it
        cannot take writes, new messages are refused (accepting means storing first)."""
        before, self._reported_fault = self._reported_fault, self.spool.health(self.cfg.daemon.min_free_space)
        fault = self._reported_fault
        if fault and fault != before:
            log.error("spool_unwritable", error=fault, consequence="new messages are refused")
        elif before and not fault:
            log.info("spool_writable", was=before)
            self.messages.resume()

    def summary(self) -> str:
        """One line for systemd's STATUS= and `hermesctl status`: agents per state, running
        first, the fatal ones named (they stay down until someone acts), and any spool fault,
        e.g. `3 running, 1 fatal (cs)`."""
        by_state: dict[State, list[str]] = {}
        for agent_id, slot in self.supervisor.slots.items():
            by_state.setdefault(slot.state, []).append(agent_id)
        parts = []
        for state in SUMMARY_ORDER:
            names = by_state.get(state, [])
            if names:
                named = f" ({', '.join(sorted(names))})" if state is State.FATAL else ""
                parts.append(f"{len(names)} {state}{named}")
        agents = ", ".join(parts)
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
        self.platforms.close_intake()
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

    # ---------------------------------------------------------------- reload

    async def _reload_quietly(self) -> None:
        try:
            await self.reload(wait=False)
        except config.ConfigError:
            pass  # already logged; the old configuration keeps running

    async def reload(self, wait: bool) -> dict[str, list[str]]:
        """Validate the file again, then restart only the agents whose spec changed and the
        platforms whose table changed."""
        async with self._reload_lock:
            try:
                new = (config.load(self.config_path, running=self.cfg) if self.config_path
                       else config.embedded_default())
            except config.ConfigError as exc:
                log.error("reload_rejected", error=str(exc))
                raise
            share_state_dir(new)  # [daemon] user may have changed
            if self.state == "running":  # systemd knows of no reload while it starts or stops
                self.notifier.reloading()
            specs = new.worker_specs()
            changes = reconfigure.diff({a: slot.spec for a, slot in self.supervisor.slots.items()}, specs)
            platforms = host.changed(self.cfg.platforms, new.platforms, self.adapters)
            self.cfg, self.messages.router = new, _router(new)
            self.supervisor.settings = new.daemon
            try:
                log.configure(new.daemon.log_level, new.daemon.log_format, new.daemon.log_file)
            except OSError as exc:
                log.error("log_file_failed", file=new.daemon.log_file, error=str(exc))
            log.info("reload_applying", added=",".join(changes.added),
                     removed=",".join(changes.removed), changed=",".join(changes.changed),
                     platforms=",".join(platforms))
            done = anyio.Event()
            assert self._task_group is not None
            self._task_group.start_soon(self._apply, changes, specs, platforms, done)
            if wait:
                await done.wait()
            return {**msgspec.structs.asdict(changes), "platforms": list(platforms)}

    async def _apply(self, changes: reconfigure.Diff, specs: dict[str, protocol.WorkerSpec],
                     platforms: dict[str, str], done: anyio.Event) -> None:
        timeout = self.cfg.daemon.stop_timeout
        try:
            async with anyio.create_task_group() as restarts:
                restarts.start_soon(self.platforms.restart, platforms, timeout)
                orphans = await reconfigure.apply(self.supervisor, changes, specs, timeout)
            for message in orphans:  # a removed agent's messages go where the routes now say
                entry = self.spool.get(message.msg_id)
                if entry is not None:
                    self.messages.dispatch(entry)
            if self.state == "running":
                self.notifier.ready(self.summary())
            log.info("reload_done", agents=len(self.supervisor.slots))
        finally:
            done.set()


def _router(cfg: config.Config) -> Router:
    routes = ((r.match, r.agent, r.allowed_users, r.require_mention, r.reply_in_thread) for r in cfg.routes)
    return Router(routes, cfg.daemon.default_agent)

