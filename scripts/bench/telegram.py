#!/usr/bin/env python3
"""Telegram end to end: 1,000 updates over 100 forum topics and 10 echo agents through the
fake Bot API server (tests/fakes/telegram_server.py), with python-telegram-bot inside the
real hermesd.

Target (from the issue): all answered, none twice; report the parent's CPU-ms per message
and end-to-end p50/p99 with the echo runtime.

The flood gate (hermesd/ratelimit.py) lets the bot send <= 1 msg/s per chat, <= 20/min per
group chat and <= 30/s overall, and cannot be configured.  1,000 replies into one forum group
would take ~50 min (20/min), so the topics are spread over many forum chats (default 100
chats with 1 topic each: 10 replies per chat).  The 30/s global limit still means >= 33 s for
1,000 replies whatever the layout.  Two phases, each on its own chats so that one phase's
sends do not count against the next one's group windows:

  paced  updates arrive at --rate per second (default 20/s, under every limit), round robin
         over the topics: the gate should not hold anything back, so latency is the daemon's
  burst  all updates are queued at once: the gate decides when replies leave (~33 s); this
         measures correctness under load, inbound throughput and the daemon's excess over
         what the limits alone impose

"What the limits alone impose" is computed, not guessed: hermesd's own FloodGate runs in a
virtual-time event loop with the same arrival times and zero processing time, one task per
conversation delivering in order (as Service._deliver_conversation does).  Its send time
minus the arrival time is the gate's floor for each message.

Per message: queued = time.time() just before the update is put in the fake's queue;
spooled = inbound.received_at in the daemon's spool.db (matched by update_id); sent = the
fake's record time of the accepted sendMessage carrying the message's id (matched by text);
delivered = outbox.delivered_at.  Parent CPU is psutil cpu_times() of the hermesd process
over the phase's window (first update queued .. all replies seen + 0.2 s), shown raw and
net of the idle rate and of the `status` samples taken meanwhile (queue depths; the same
request `hermesctl --json status` makes, which reads every worker's smaps).

Run with the venv's python:  .venv/bin/python scripts/bench/telegram.py      (~100 s)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import selectors
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h
import anyio
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.fakes is not an installed package

from hermesd.ratelimit import FloodGate
from tests.fakes.telegram_server import FakeTelegram

USER = 42  # the one allowed user; every update is from them
PHASES = ("paced", "burst")
MARK = re.compile(r"\b([WPB]\d{5})\b")  # the id each update's text carries, echoed back


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Topic:
    chat_id: int
    topic_id: int
    agent: str

    @property
    def route(self) -> str:
        return f"telegram:topic:{self.chat_id}:{self.topic_id}"  # a prefix of the per-user key


def topics(phase: int, count: int, chats: int, agents: int) -> list[Topic]:
    """`count` forum topics spread round robin over `chats` forum chats, and over the agents.
    Each phase gets chats of its own (supergroup ids, so the group limit applies)."""
    return [Topic(chat_id=-(1001000000000 + phase * 100000 + t % chats), topic_id=100 + t // chats,
                  agent=h.agent_id(t % agents)) for t in range(count)]


@dataclass
class Msg:
    mark: str
    topic: Topic
    offset: float  # seconds after the phase start when it is due
    queued: float = 0.0  # time.time()
    update_id: int = 0


def schedule(prefix: str, layout: list[Topic], messages: int, rate: float | None) -> list[Msg]:
    """Message k goes to topic k mod len(layout); due at k/rate (or at once without a rate)."""
    return [Msg(f"{prefix}{k:05d}", layout[k % len(layout)], k / rate if rate else 0.0)
            for k in range(messages)]


# ----------------------------------------------------------------------------- the gate's floor


class _VirtualSelector(selectors.DefaultSelector):
    """Never sleeps: a select that would wait moves the virtual clock instead."""

    loop: _VirtualLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("virtual loop has nothing scheduled")
            self.loop.now += timeout
        return events


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _VirtualSelector()
        self.now = 0.0
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.now


def gate_floor(msgs: list[Msg], arrivals: list[float]) -> list[float]:
    """Send time of each message (same order) if the daemon took no time at all: hermesd's
    FloodGate in virtual time, one in-order delivery task per conversation (topic)."""
    conversations: dict[Topic, list[int]] = defaultdict(list)
    for i, msg in enumerate(msgs):
        conversations[msg.topic].append(i)
    order = {topic: sorted(ix, key=lambda i: arrivals[i]) for topic, ix in conversations.items()}
    sent = [0.0] * len(msgs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = FloodGate(clock=loop.time)

        async def conversation(topic: Topic, indices: list[int]) -> None:
            for i in indices:
                if arrivals[i] > loop.time():
                    await anyio.sleep(arrivals[i] - loop.time())
                await gate.wait(topic.agent, topic.chat_id)
                sent[i] = loop.time()

        async with anyio.create_task_group() as tg:
            for topic, indices in order.items():
                tg.start_soon(conversation, topic, indices)

    anyio.run(main, backend_options={"loop_factory": _VirtualLoop})
    return sent


# ----------------------------------------------------------------------------- daemon


class TelegramDaemon(h.Daemon):
    """The harness daemon, configured for the fake Telegram server instead of local routes."""

    def __init__(self, agents: int, fake: FakeTelegram, layouts: list[list[Topic]]) -> None:
        super().__init__(agents)
        self.fake = fake
        self.layouts = layouts

    def write_config(self) -> None:
        token_file = self.dir / "telegram.token"
        token_file.write_text(self.fake.token + "\n")
        lines = [
            *self.daemon_section(),
            "[platforms.telegram]",
            f'token_file = "{token_file}"',
            f'api_base = "{self.fake.url}"',
            f"allowed_users = [{USER}]",
        ]
        for i in range(self.agents):
            lines += [f"[agents.{h.agent_id(i)}]", 'runtime = "echo"']
        for layout in self.layouts:
            for topic in layout:
                lines += ["[[routes]]", f'match = "{topic.route}"', f'agent = "{topic.agent}"']
        self.config.write_text("\n".join(lines) + "\n")

    def wait_polling(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.fake.calls("setMyCommands") or \
                self.status()["platforms"].get("telegram", {}).get("state") != "polling":
            if not self.alive():
                raise RuntimeError("hermesd exited:\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("telegram platform not polling:\n" + self.log_tail())
            time.sleep(0.05)


class Sampler(threading.Thread):
    """Polls `status` every `interval` s: agent queue depths and the gate's waiters."""

    def __init__(self, daemon: TelegramDaemon, interval: float) -> None:
        super().__init__(daemon=True, name="status-sampler")
        self.daemon_ = daemon
        self.interval = interval
        self.halt = threading.Event()
        self.samples: list[tuple[float, int, int]] = []  # (time, sum of agent queues, waiting_to_send)
        self.missed: list[str] = []

    def run(self) -> None:
        while self.interval > 0 and not self.halt.wait(self.interval):
            try:
                status = self.daemon_.status()
            except Exception as exc:  # noqa: BLE001 - a missed sample is no reason to stop
                self.missed.append(repr(exc))
                continue
            queued = sum(a["queue"] for a in status["agents"])
            waiting = int(status["platforms"].get("telegram", {}).get("waiting_to_send", 0))
            self.samples.append((time.time(), queued, waiting))

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# ----------------------------------------------------------------------------- a phase


@dataclass
class PhaseResult:
    name: str
    msgs: list[Msg]
    started: float  # time.time() of the first update
    answered_at: float  # time.time() when every message had a reply (or the wait gave up)
    wall: float  # seconds of the CPU window
    parent_cpu: float
    parent_sys: float  # of which in the kernel (system time)
    workers_cpu: float
    bench_cpu: float
    samples: list[tuple[float, int, int]]
    status_calls: int
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # mark -> accepted sends
    refused: int = 0  # sendMessage answered with an error
    wrong: list[str] = field(default_factory=list)
    spooled: dict[int, float] = field(default_factory=dict)  # update_id -> received_at
    delivered: dict[str, float] = field(default_factory=dict)  # mark -> outbox.delivered_at
    floor: list[float] = field(default_factory=list)
    chat_actions: int = 0
    polls: int = 0


def count_answered(fake: FakeTelegram, prefix: str) -> int:
    with fake.cond:
        return len({m[1] for c in fake.records if c["method"] == "sendMessage" and c["status"] == 200
                    and (m := MARK.search(str(c["params"].get("text", "")))) and m[1][0] == prefix})


def run_phase(name: str, daemon: TelegramDaemon, fake: FakeTelegram, msgs: list[Msg],
              wait_for: float, status_every: float) -> PhaseResult:
    prefix = msgs[0].mark[0]
    tree = daemon.tree()
    me = psutil.Process()
    before = (h.cpu_seconds(tree[:1]), h.cpu_seconds(tree[1:]), h.cpu_seconds([me]), tree[0].cpu_times().system)
    sampler = Sampler(daemon, status_every)
    sampler.start()
    t0 = time.perf_counter()
    started = time.time()
    for msg in msgs:
        if (delay := t0 + msg.offset - time.perf_counter()) > 0:
            time.sleep(delay)
        msg.queued = time.time()
        update = fake.topic_message(msg.topic.chat_id, msg.topic.topic_id, USER, f"{msg.mark} hello", mention=True)
        msg.update_id = update["update_id"]
    deadline = time.monotonic() + wait_for
    while count_answered(fake, prefix) < len(msgs) and time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError("hermesd died during the run:\n" + daemon.log_tail())
        time.sleep(0.05)
    answered_at = time.time()
    time.sleep(0.2)  # the last responses reach the daemon, which marks them delivered
    wall = time.perf_counter() - t0
    tree = daemon.tree()
    after = (h.cpu_seconds(tree[:1]), h.cpu_seconds(tree[1:]), h.cpu_seconds([me]), tree[0].cpu_times().system)
    sampler.stop()
    if sampler.missed:
        print(f"{name}: {len(sampler.missed)} status samples failed, e.g. {sampler.missed[0]}",
              file=sys.stderr, flush=True)
    return PhaseResult(name, msgs, started, answered_at, wall, after[0] - before[0], after[3] - before[3],
                       after[1] - before[1], after[2] - before[2], sampler.samples, len(sampler.samples))


def collect(result: PhaseResult, fake: FakeTelegram, spool: Path) -> None:
    """Replies by mark (from the fake), spool times (from spool.db), and the gate's floor."""
    by_mark = {msg.mark: msg for msg in result.msgs}
    prefix = result.msgs[0].mark[0]
    for call in fake.calls("sendMessage"):
        found = MARK.search(str(call["params"].get("text", "")))
        if not found or found[1][0] != prefix:
            continue
        if call["status"] != 200:
            result.refused += 1
            continue
        result.replies.setdefault(found[1], []).append(call)
        msg, params = by_mark.get(found[1]), call["params"]
        if (msg is None or str(params.get("chat_id")) != str(msg.topic.chat_id)
                or str(params.get("message_thread_id")) != str(msg.topic.topic_id)
                or not str(params.get("text")).startswith(f"{msg.topic.agent}: ")):
            result.wrong.append(found[1])
    end = result.answered_at + 0.2
    for call in fake.calls():
        if result.started <= call["time"] <= end:
            result.chat_actions += call["method"] == "sendChatAction"
            result.polls += call["method"] == "getUpdates"
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        ids = {str(msg.update_id) for msg in result.msgs}
        for external_id, received_at in db.execute(
                "SELECT external_id, received_at FROM inbound WHERE platform = 'telegram'"):
            if external_id in ids:
                result.spooled[int(external_id)] = received_at
        for text, delivered_at in db.execute(
                "SELECT text, delivered_at FROM outbox WHERE platform = 'telegram'"):
            found = MARK.search(text)
            if found and found[1] in by_mark and delivered_at is not None:
                result.delivered[found[1]] = delivered_at
    finally:
        db.close()
    base = min(msg.queued for msg in result.msgs)
    sim = gate_floor(result.msgs, [msg.queued - base for msg in result.msgs])
    result.floor = [s - (msg.queued - base) for s, msg in zip(sim, result.msgs, strict=False)]


# ----------------------------------------------------------------------------- output


def row(name: str, values: list[float]) -> list[str]:
    if not values:
        return [name, "-", "-", "-", "-", "0"]
    s = h.summary_ms(values)
    return [name] + [f"{s[k]:,.1f}" for k in ("p50", "p99", "max", "mean")] + [f"{len(values):,}"]


def excess_row(e2e: list[float], floor: list[float]) -> list[str]:
    """End to end minus the gate's floor, percentile by percentile: per message the two can
    differ in order (the real gate sees replies in the order workers finish them), so only
    the distributions are compared."""
    if not e2e:
        return ["end to end minus gate floor (by percentile)", "-", "-", "-", "-", "0"]
    a, b = h.summary_ms(e2e), h.summary_ms(floor)
    return (["end to end minus gate floor (by percentile)"]
            + [f"{a[k] - b[k]:,.1f}" for k in ("p50", "p99", "max", "mean")] + [f"{len(e2e):,}"])


def report(r: PhaseResult, idle_rate: float, status_cost: float) -> dict[str, float]:
    n = len(r.msgs)
    counts = Counter({mark: len(calls) for mark, calls in r.replies.items()})
    answered = sum(1 for msg in r.msgs if counts[msg.mark] >= 1)
    twice = sum(1 for msg in r.msgs if counts[msg.mark] > 1)
    first = {mark: min(c["time"] for c in calls) for mark, calls in r.replies.items()}
    e2e = [first[m.mark] - m.queued for m in r.msgs if m.mark in first]
    inbound = [r.spooled[m.update_id] - m.queued for m in r.msgs if m.update_id in r.spooled]
    middle = [first[m.mark] - r.spooled[m.update_id] for m in r.msgs if m.mark in first and m.update_id in r.spooled]
    ack = [r.delivered[m.mark] - first[m.mark] for m in r.msgs if m.mark in first and m.mark in r.delivered]
    floor = [f for m, f in zip(r.msgs, r.floor, strict=False) if m.mark in first]
    last_queued = max(m.queued for m in r.msgs)
    last_sent = max(first.values()) if first else float("nan")
    last_spooled = max(r.spooled.values()) if r.spooled else float("nan")
    floor_span = max(m.queued - r.started + f for m, f in zip(r.msgs, r.floor, strict=False))

    print(f"\n[{r.name}] {n:,} updates over {len({m.topic for m in r.msgs})} topics in "
          f"{len({m.topic.chat_id for m in r.msgs})} forum chats, {len({m.topic.agent for m in r.msgs})} agents; "
          f"last update queued at {last_queued - r.started:.2f} s, all spooled at {last_spooled - r.started:.2f} s, "
          f"last reply sent at {last_sent - r.started:.2f} s (gate floor {floor_span:.2f} s)")
    print(f"  answered {answered:,}/{n:,}, answered twice {twice}, wrong chat/topic/agent {len(r.wrong)}, "
          f"sendMessage refused {r.refused}, spooled {len(r.spooled):,}/{n:,}")
    print(h.table([["per message, ms", "p50", "p99", "max", "mean", "n"],
                   row("end to end: queued -> sendMessage at the fake", e2e),
                   row("  queued -> spooled (getUpdates, parse, insert)", inbound),
                   row("  spooled -> sendMessage (worker, outbox, gate, HTTP)", middle),
                   row("gate floor (FloodGate, zero daemon time)", floor),
                   excess_row(e2e, floor),
                   row("sendMessage -> marked delivered in spool", ack)]))
    idle = idle_rate * r.wall
    status = status_cost * r.status_calls
    net = r.parent_cpu - idle - status
    print(f"  parent CPU {r.parent_cpu * 1e3:,.0f} ms over {r.wall:.1f} s = {r.parent_cpu / n * 1e3:.2f} ms/message "
          f"raw; {net / n * 1e3:.2f} ms/message net of idle ({idle * 1e3:,.0f} ms) and "
          f"{r.status_calls} status samples ({status * 1e3:,.0f} ms); "
          f"{r.parent_cpu / r.wall:.0%} of a core, {r.parent_sys / r.parent_cpu if r.parent_cpu else 0:.0%} of it "
          "in the kernel")
    print(f"  workers + zygote CPU {r.workers_cpu / n * 1e3:.2f} ms/message; benchmark process (fake server "
          f"+ driver) CPU {r.bench_cpu / r.wall:.0%} of a core; calls seen by the fake in the window: "
          f"{r.chat_actions:,} sendChatAction, {r.polls:,} getUpdates")
    if r.samples:
        print(f"  status every {r.samples[1][0] - r.samples[0][0] if len(r.samples) > 1 else 0:.1f} s: "
              f"agent queues max {max(s[1] for s in r.samples)}, gate waiters max {max(s[2] for s in r.samples)}")
    return {"e2e_p50": h.percentile(e2e, 50) * 1e3 if e2e else float("nan"),
            "e2e_p99": h.percentile(e2e, 99) * 1e3 if e2e else float("nan"),
            "cpu": r.parent_cpu / n * 1e3, "net": net / n * 1e3,
            "ok": float(answered == n and twice == 0 and not r.wrong)}


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10, help="echo agents (default %(default)s)")
    parser.add_argument("--topics", type=int, default=100, help="forum topics per phase (default %(default)s)")
    parser.add_argument("--chats", type=int, default=100,
                        help="forum chats the topics are spread over (default %(default)s)")
    parser.add_argument("--messages", type=int, default=1000, help="updates per phase (default %(default)s)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="updates per second in the paced phase (default %(default)s)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of: paced, burst "
                        "(default %(default)s)")
    parser.add_argument("--status-every", type=float, default=1.0,
                        help="seconds between status samples during a phase; 0 = none (default %(default)s)")
    parser.add_argument("--time-limit", type=float, default=170,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.messages < 1 or args.topics < 1 or args.agents < 1 or not 1 <= args.chats <= args.topics:
        parser.error("need messages, topics, agents >= 1 and 1 <= chats <= topics")
    h.guard(args.time_limit)
    started = time.monotonic()

    warm = topics(0, args.agents, args.agents, args.agents)  # one chat per agent
    layouts = {p: topics(i + 1, args.topics, args.chats, args.agents) for i, p in enumerate(PHASES)}
    plans = {"paced": schedule("P", layouts["paced"], args.messages, args.rate),
             "burst": schedule("B", layouts["burst"], args.messages, None)}
    # What the limits alone impose on each phase, before spending any time on it.
    budget = 15.0  # start-up, warm-up, baselines, teardown
    for p in phases:
        span = max(gate_floor(plans[p], [m.offset for m in plans[p]]))
        print(f"{p}: the flood gate alone needs {span:.1f} s for {args.messages:,} replies "
              f"({args.topics} topics in {args.chats} chats)", file=sys.stderr, flush=True)
        budget += span + 5
    if budget > args.time_limit:
        parser.error(f"the flood gate alone makes this run take ~{budget:.0f} s, over --time-limit "
                     f"{args.time_limit:g} s: use more --chats, fewer --messages or a lower --rate")

    summary: dict[str, dict[str, float]] = {}
    with FakeTelegram() as fake, TelegramDaemon(args.agents, fake, [warm, *layouts.values()]) as daemon:
        daemon.wait_running()
        daemon.wait_polling()
        # Warm-up: one message per agent (in chats of its own), so first-turn costs and the
        # HTTP connection pool are not in the figures.
        warm_msgs = schedule("W", warm, args.agents, None)
        run_phase("warm-up", daemon, fake, warm_msgs, 30, 0)
        time.sleep(1.0)
        parent = daemon.tree()[0]
        # Baselines: the parent's CPU while idle (its getUpdates long poll returns every 2 s
        # from the fake), and the CPU one status request costs it.
        t, c = time.perf_counter(), h.cpu_seconds([parent])
        time.sleep(3.0)
        idle_rate = (h.cpu_seconds([parent]) - c) / (time.perf_counter() - t)
        c = h.cpu_seconds([parent])
        for _ in range(10):
            daemon.status()
        status_cost = (h.cpu_seconds([parent]) - c) / 10
        print(f"idle parent CPU {idle_rate * 1e3:.1f} ms/s; one status request {status_cost * 1e3:.1f} ms "
              "of parent CPU", file=sys.stderr, flush=True)

        results = []
        for p in phases:
            wait = max(gate_floor(plans[p], [m.offset for m in plans[p]])) - plans[p][-1].offset + 30
            print(f"{p} phase ...", file=sys.stderr, flush=True)
            results.append(run_phase(p, daemon, fake, plans[p], wait, args.status_every))
            time.sleep(1.5)  # a duplicate would show up by now; typing loops end
        time.sleep(1.0)
        spool = daemon.dir / "state" / "spool.db"
        for r in results:
            collect(r, fake, spool)
        if not daemon.alive():
            raise RuntimeError("hermesd died during the run:\n" + daemon.log_tail())
        problems = [line for line in daemon.log_tail(100000).splitlines()
                    if "level=warning" in line or "level=error" in line]

    print(f"\nhermesd with {args.agents} echo agents, telegram platform against the in-process fake Bot API "
          f"server; {args.messages:,} updates per phase; idle parent CPU {idle_rate * 1e3:.1f} ms/s, "
          f"one status request {status_cost * 1e3:.1f} ms")
    for r in results:
        summary[r.name] = report(r, idle_rate, status_cost)
    if problems:
        print(f"\ndaemon warnings/errors ({len(problems)}):")
        for line in problems[:10]:
            print("  " + line)

    print()
    for name, s in summary.items():
        print(f"target [{name}] all answered, none twice: {h.verdict(bool(s['ok']))}; parent CPU "
              f"{s['cpu']:.2f} ms/message ({s['net']:.2f} net); end to end p50 {s['e2e_p50']:,.1f} ms, "
              f"p99 {s['e2e_p99']:,.1f} ms")
    print(f"(whole run {time.monotonic() - started:.0f} s)", flush=True)
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    h.run_script(main)
