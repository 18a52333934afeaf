#!/usr/bin/env python3
"""Discord end to end: 1,000 messages over 50 channels and threads and 10 echo agents through
the fake Discord gateway + REST server (tests/fakes/discord_server.py), with discord.py inside
the real hermesd.

Target (from the issue): all answered once; report the parent's CPU-ms per message and
end-to-end p50/p99 with the echo runtime.

Layout: one guild per phase, holding --conversations / 2 text channels and as many threads
(thread t in channel t mod channels), interleaved, each with a route of its own: conversation
k goes to agent k mod --agents
(`discord:channel:<guild>:<channel>`, `discord:thread:<guild>:<channel>:<thread>`).  Every
message is from the one allowed user, mentions the bot and carries an id (`P00042`) that the
echo reply repeats, so replies are matched to messages by text.  As on Discord, the fake
sends every message the bot posts back to it as a MESSAGE_CREATE: as many gateway events
again as there are messages, which the daemon must parse and ignore.

hermesd has no flood gate of its own for Discord (discord.py obeys the rate-limit headers and
429s it is given), and the fake sends no rate-limit headers, so both phases measure the
daemon alone:

  paced  messages arrive at --rate per second (default 20/s), round robin over the
         conversations: one message in flight at a time, latency is the daemon's
  burst  all messages are posted at once: correctness under a backlog, and how fast the
         daemon drains 1,000 messages

Per message: queued = time.time() just before fake.channel_message(); spooled =
inbound.received_at in the daemon's spool.db (matched by the Discord message id); sent = the
fake's record time of the accepted POST /channels/<id>/messages carrying the message's id
(matched by text); delivered = outbox.delivered_at.  Parent CPU is psutil cpu_times() of the
hermesd process over the phase's window: from the first message queued until all replies
were seen and the parent is idle again (a 0.1 s slice with at most one 10 ms clock tick of
CPU; the echoes arrive after the replies).  It is shown raw and net of the idle rate and of
the `status` samples taken meanwhile.  --no-echo drops the echoes in the fake, to show what
they cost.

Run with the venv's python:  .venv/bin/python scripts/bench/discord.py      (~60 s)
(This file shadows the `discord` package for anything run from scripts/bench; the benchmark
process itself never imports discord.py, only the daemon does.)
"""

from __future__ import annotations

import argparse
import itertools
import re
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.fakes is not an installed package

from tests.fakes.discord_server import FakeDiscord

USER = 501  # the one allowed user; every message is from them
PHASES = ("paced", "burst")
MARK = re.compile(r"\b([WPB]\d{5})\b")  # the id each message's text carries, echoed back
SEND = re.compile(r"/channels/(\d+)/messages$")
TYPING = re.compile(r"/channels/\d+/typing$")
DISCORD_HEARTBEAT_MS = 41250  # what Discord's HELLO says; the fake's default (1 s) is for tests


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Conversation:
    guild_id: int
    channel_id: int  # where messages are posted and replies go: the channel, or the thread
    parent_id: int | None  # a thread's channel; None for a channel
    agent: str

    @property
    def route(self) -> str:
        """A prefix of the session key (channel keys end in the user id: channel_sessions = per_user)."""
        if self.parent_id is None:
            return f"discord:channel:{self.guild_id}:{self.channel_id}"
        return f"discord:thread:{self.guild_id}:{self.parent_id}:{self.channel_id}"


def layout(phase: int, count: int, agents: int) -> list[Conversation]:
    """`count` conversations in one guild of their own: ceil(count/2) channels and the rest
    threads, interleaved (channel 0, thread 0, channel 1, ...); conversation k -> agent k mod agents."""
    guild = 10_000 + phase
    channels = (count + 1) // 2
    out = []
    for k in range(count):
        agent = h.agent_id(k % agents)
        if k % 2 == 0:
            out.append(Conversation(guild, phase * 100_000 + 1_000 + k // 2, None, agent))
        else:
            parent = phase * 100_000 + 1_000 + (k // 2) % channels
            out.append(Conversation(guild, phase * 100_000 + 50_000 + k // 2, parent, agent))
    return out


def add_guild(fake: FakeDiscord, convs: list[Conversation]) -> None:
    fake.add_guild(convs[0].guild_id, name=f"bench {convs[0].guild_id}",
                   channels=[(c.channel_id, f"ch{c.channel_id}") for c in convs if c.parent_id is None],
                   threads=[(c.channel_id, c.parent_id, f"th{c.channel_id}") for c in convs
                            if c.parent_id is not None],
                   members=[USER])


@dataclass
class Msg:
    mark: str
    conv: Conversation
    offset: float  # seconds after the phase start when it is due
    queued: float = 0.0  # time.time()
    message_id: int = 0


def schedule(prefix: str, convs: list[Conversation], messages: int, rate: float | None) -> list[Msg]:
    """Message k goes to conversation k mod len(convs); due at k/rate (or at once without a rate)."""
    return [Msg(f"{prefix}{k:05d}", convs[k % len(convs)], k / rate if rate else 0.0) for k in range(messages)]


# ----------------------------------------------------------------------------- daemon


class DiscordDaemon(h.Daemon):
    """The harness daemon, configured for the fake Discord server instead of local routes."""

    def __init__(self, agents: int, fake: FakeDiscord, layouts: list[list[Conversation]]) -> None:
        super().__init__(agents)
        self.fake = fake
        self.layouts = layouts

    def write_config(self) -> None:
        token_file = self.dir / "discord.token"
        token_file.write_text(self.fake.token + "\n")
        lines = [
            *self.daemon_section(),
            "[platforms.discord]",
            f'token_file = "{token_file}"',
            f'api_base = "{self.fake.api_base}"',
            f'gateway_url = "{self.fake.gateway_url}"',
            f"allowed_users = [{USER}]",
        ]
        for i in range(self.agents):
            lines += [f"[agents.{h.agent_id(i)}]", 'runtime = "echo"']
        for convs in self.layouts:
            for conv in convs:
                lines += ["[[routes]]", f'match = "{conv.route}"', f'agent = "{conv.agent}"']
        self.config.write_text("\n".join(lines) + "\n")

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.fake.wait_identified(timeout):
            raise TimeoutError("hermesd never identified on the gateway:\n" + self.log_tail())
        deadline = time.monotonic() + timeout
        while self.status()["platforms"].get("discord", {}).get("state") != "ready":
            if not self.alive():
                raise RuntimeError("hermesd exited:\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("discord platform not ready:\n" + self.log_tail())
            time.sleep(0.05)


class Sampler(threading.Thread):
    """Polls `status` every `interval` s: the sum of the agents' queue depths."""

    def __init__(self, daemon: DiscordDaemon, interval: float) -> None:
        super().__init__(daemon=True, name="status-sampler")
        self.daemon_ = daemon
        self.interval = interval
        self.halt = threading.Event()
        self.samples: list[tuple[float, int]] = []  # (time, sum of agent queues)
        self.missed: list[str] = []

    def run(self) -> None:
        while self.interval > 0 and not self.halt.wait(self.interval):
            try:
                status = self.daemon_.status()
            except Exception as exc:  # noqa: BLE001 - a missed sample is no reason to stop
                self.missed.append(repr(exc))
                continue
            self.samples.append((time.time(), sum(a["queue"] for a in status["agents"])))

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


class Tally:
    """Counts the distinct marks of a phase among the fake's accepted sends, reading only the
    records it has not read yet (a full scan every 50 ms would hold the fake's lock for long)."""

    def __init__(self, fake: FakeDiscord, prefix: str) -> None:
        self.fake, self.prefix = fake, prefix
        self.index = 0
        self.marks: set[str] = set()

    def count(self) -> int:
        with self.fake.cond:
            records = self.fake.records
            while self.index < len(records):
                call = records[self.index]
                if call["status"] is None:  # still being answered: look again next time
                    break
                self.index += 1
                if call["method"] == "POST" and call["status"] == 200 and SEND.search(call["path"]):
                    found = MARK.search(str((call["json"] or {}).get("content", "")))
                    if found and found[1][0] == self.prefix:
                        self.marks.add(found[1])
        return len(self.marks)


# ----------------------------------------------------------------------------- a phase


@dataclass
class PhaseResult:
    name: str
    msgs: list[Msg]
    started: float  # time.time() of the first message
    answered_at: float  # time.time() when every message had a reply (or the wait gave up)
    wall: float  # seconds of the CPU window
    parent_cpu: float
    parent_sys: float  # of which in the kernel (system time)
    workers_cpu: float
    bench_cpu: float
    samples: list[tuple[float, int]]
    status_calls: int
    events: int  # gateway dispatches sent to the daemon in the window (the users' and its own messages)
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # mark -> accepted sends
    refused: int = 0  # sends answered with an error
    wrong: list[str] = field(default_factory=list)
    out_of_order: int = 0  # replies in a conversation sent in another order than the messages
    spooled: dict[int, float] = field(default_factory=dict)  # message id -> received_at
    spooled_total: int = 0  # inbound rows of this phase's guild, whoever wrote them
    spooled_from_bot: int = 0  # of which the bot's own messages (must be 0)
    delivered: dict[str, float] = field(default_factory=dict)  # mark -> outbox.delivered_at
    typing: int = 0
    other_rest: Counter[str] = field(default_factory=Counter)


def drop_echoes(fake: FakeDiscord) -> None:
    """Make this fake keep the bot's own messages to itself (for --no-echo)."""
    dispatch = fake._dispatch

    def without_echoes(event: str, data: dict[str, Any], intent: int, hold: bool = False) -> None:
        if not (event == "MESSAGE_CREATE" and data["author"]["id"] == str(fake.bot_id)):
            dispatch(event, data, intent, hold)

    fake._dispatch = without_echoes  # type: ignore[method-assign]


def gateway_events(fake: FakeDiscord) -> int:
    """Dispatches the fake has queued for the daemon's gateway session(s) so far."""
    with fake.cond:
        return sum(len(session.buffer) for session in fake.sessions.values())


def run_phase(name: str, daemon: DiscordDaemon, fake: FakeDiscord, msgs: list[Msg],
              wait_for: float, status_every: float, idle_rate: float = 0.0) -> PhaseResult:
    tally = Tally(fake, msgs[0].mark[0])
    tally.count()  # skip what is already recorded
    tree = daemon.tree()
    me = psutil.Process()
    before = (h.cpu_seconds(tree[:1]), h.cpu_seconds(tree[1:]), h.cpu_seconds([me]), tree[0].cpu_times().system)
    events = gateway_events(fake)
    sampler = Sampler(daemon, status_every)
    sampler.start()
    t0 = time.perf_counter()
    started = time.time()
    for msg in msgs:
        if (delay := t0 + msg.offset - time.perf_counter()) > 0:
            time.sleep(delay)
        msg.queued = time.time()
        message = fake.channel_message(msg.conv.guild_id, msg.conv.channel_id, USER, f"{msg.mark} hello",
                                       mention_bot=True)
        msg.message_id = int(message["id"])
    deadline = time.monotonic() + wait_for
    while tally.count() < len(msgs) and time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError("hermesd died during the run:\n" + daemon.log_tail())
        time.sleep(0.05)
    answered_at = time.time()
    # The window ends when the parent is idle again: after the last reply it still has the
    # bot's own echoed MESSAGE_CREATEs to parse and drop, and the last sends to mark delivered.
    time.sleep(0.2)
    parent, settle = daemon.tree()[0], time.monotonic() + 5.0
    while time.monotonic() < settle:
        c = h.cpu_seconds([parent])
        time.sleep(0.1)
        if h.cpu_seconds([parent]) - c <= max(0.010, 2 * idle_rate * 0.1):  # <= one 10 ms clock tick
            break
    wall = time.perf_counter() - t0
    tree = daemon.tree()
    after = (h.cpu_seconds(tree[:1]), h.cpu_seconds(tree[1:]), h.cpu_seconds([me]), tree[0].cpu_times().system)
    events = gateway_events(fake) - events
    sampler.stop()
    if sampler.missed:
        print(f"{name}: {len(sampler.missed)} status samples failed, e.g. {sampler.missed[0]}",
              file=sys.stderr, flush=True)
    return PhaseResult(name, msgs, started, answered_at, wall, after[0] - before[0], after[3] - before[3],
                       after[1] - before[1], after[2] - before[2], sampler.samples, len(sampler.samples),
                       events)


def collect(result: PhaseResult, fake: FakeDiscord, spool: Path) -> None:
    """Replies by mark (from the fake), REST calls in the window, and spool times."""
    by_mark = {msg.mark: msg for msg in result.msgs}
    prefix = result.msgs[0].mark[0]
    end = result.started + result.wall
    order: dict[int, list[str]] = defaultdict(list)  # channel id -> marks in the order sent
    for call in fake.calls():
        path = call["path"]
        if call["method"] == "POST" and (sent := SEND.search(path)):
            found = MARK.search(str((call["json"] or {}).get("content", "")))
            if found and found[1][0] == prefix:
                if call["status"] != 200:
                    result.refused += 1
                    continue
                result.replies.setdefault(found[1], []).append(call)
                order[int(sent[1])].append(found[1])
                msg = by_mark.get(found[1])
                if (msg is None or int(sent[1]) != msg.conv.channel_id
                        or not str(call["json"].get("content")).startswith(f"{msg.conv.agent}: ")):
                    result.wrong.append(found[1])
                continue
        if result.started <= call["time"] <= end:
            if call["method"] == "POST" and TYPING.search(path):
                result.typing += 1
            elif not (call["method"] == "POST" and SEND.search(path)):
                result.other_rest[f"{call['method']} {re.sub(r'/[0-9]+', '/<id>', path)}"] += 1
    for marks in order.values():
        result.out_of_order += sum(1 for a, b in itertools.pairwise(marks) if a > b)
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        ids = {str(msg.message_id) for msg in result.msgs}
        guild = f"discord:%:{result.msgs[0].conv.guild_id}:%"
        for external_id, received_at, sender in db.execute(
                "SELECT external_id, received_at, sender FROM inbound WHERE platform = 'discord' "
                "AND session_key LIKE ?", (guild,)):
            result.spooled_total += 1
            result.spooled_from_bot += sender == str(fake.bot_id)
            if external_id in ids:
                result.spooled[int(external_id)] = received_at
        for text, delivered_at in db.execute(
                "SELECT text, delivered_at FROM outbox WHERE platform = 'discord'"):
            found = MARK.search(text)
            if found and found[1] in by_mark and delivered_at is not None:
                result.delivered[found[1]] = delivered_at
    finally:
        db.close()


# ----------------------------------------------------------------------------- output


def row(name: str, values: list[float]) -> list[str]:
    if not values:
        return [name, "-", "-", "-", "-", "0"]
    s = h.summary_ms(values)
    return [name] + [f"{s[k]:,.1f}" for k in ("p50", "p99", "max", "mean")] + [f"{len(values):,}"]


def report(r: PhaseResult, idle_rate: float, status_cost: float) -> dict[str, float]:
    n = len(r.msgs)
    counts = Counter({mark: len(calls) for mark, calls in r.replies.items()})
    answered = sum(1 for msg in r.msgs if counts[msg.mark] >= 1)
    twice = sum(1 for msg in r.msgs if counts[msg.mark] > 1)
    first = {mark: min(c["time"] for c in calls) for mark, calls in r.replies.items()}
    e2e = [first[m.mark] - m.queued for m in r.msgs if m.mark in first]
    inbound = [r.spooled[m.message_id] - m.queued for m in r.msgs if m.message_id in r.spooled]
    middle = [first[m.mark] - r.spooled[m.message_id] for m in r.msgs
              if m.mark in first and m.message_id in r.spooled]
    ack = [r.delivered[m.mark] - first[m.mark] for m in r.msgs if m.mark in first and m.mark in r.delivered]
    last_queued = max(m.queued for m in r.msgs)
    last_sent = max(first.values()) if first else float("nan")
    last_spooled = max(r.spooled.values()) if r.spooled else float("nan")
    convs = {m.conv for m in r.msgs}
    threads = sum(1 for c in convs if c.parent_id is not None)

    print(f"\n[{r.name}] {n:,} messages over {len(convs)} conversations ({len(convs) - threads} channels, "
          f"{threads} threads), {len({m.conv.agent for m in r.msgs})} agents; last message queued at "
          f"{last_queued - r.started:.2f} s, all spooled at {last_spooled - r.started:.2f} s, "
          f"last reply sent at {last_sent - r.started:.2f} s")
    print(f"  answered {answered:,}/{n:,}, answered twice {twice}, wrong channel/agent {len(r.wrong)}, "
          f"out of order {r.out_of_order}, sends refused {r.refused}; spooled {len(r.spooled):,}/{n:,} "
          f"(rows for the guild {r.spooled_total:,}, from the bot itself {r.spooled_from_bot})")
    print(h.table([["per message, ms", "p50", "p99", "max", "mean", "n"],
                   row("end to end: queued -> POST messages at the fake", e2e),
                   row("  queued -> spooled (gateway, discord.py, insert)", inbound),
                   row("  spooled -> POST messages (worker, outbox, HTTP)", middle),
                   row("POST messages -> marked delivered in spool", ack)]))
    idle = idle_rate * r.wall
    status = status_cost * r.status_calls
    net = r.parent_cpu - idle - status
    print(f"  parent CPU {r.parent_cpu * 1e3:,.0f} ms over {r.wall:.1f} s = {r.parent_cpu / n * 1e3:.2f} ms/message "
          f"raw; {net / n * 1e3:.2f} ms/message net of idle ({idle * 1e3:,.0f} ms) and "
          f"{r.status_calls} status samples ({status * 1e3:,.0f} ms); "
          f"{r.parent_cpu / r.wall:.0%} of a core, {r.parent_sys / r.parent_cpu if r.parent_cpu else 0:.0%} of it "
          "in the kernel")
    others = ", ".join(f"{k} x{v}" for k, v in r.other_rest.most_common()) or "none"
    print(f"  workers + zygote CPU {r.workers_cpu / n * 1e3:.2f} ms/message; benchmark process (fake server "
          f"+ driver) CPU {r.bench_cpu / r.wall:.0%} of a core")
    print(f"  gateway events to the daemon in the window {r.events:,} ({r.events / n:.2f} per message); REST "
          f"calls besides the replies: {r.typing:,} typing, other: {others}")
    if r.samples:
        print(f"  status every {r.samples[1][0] - r.samples[0][0] if len(r.samples) > 1 else 0:.1f} s: "
              f"agent queues max {max(s[1] for s in r.samples)}")
    ok = (answered == n and twice == 0 and not r.wrong and not r.refused and r.spooled_from_bot == 0
          and r.spooled_total == n)
    return {"e2e_p50": h.percentile(e2e, 50) * 1e3 if e2e else float("nan"),
            "e2e_p99": h.percentile(e2e, 99) * 1e3 if e2e else float("nan"),
            "cpu": r.parent_cpu / n * 1e3, "net": net / n * 1e3, "ok": float(ok)}


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10, help="echo agents (default %(default)s)")
    parser.add_argument("--conversations", type=int, default=50,
                        help="channels + threads per phase, half of each (default %(default)s)")
    parser.add_argument("--messages", type=int, default=1000, help="messages per phase (default %(default)s)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="messages per second in the paced phase (default %(default)s)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of: paced, burst "
                        "(default %(default)s)")
    parser.add_argument("--heartbeat-ms", type=int, default=DISCORD_HEARTBEAT_MS,
                        help="gateway heartbeat interval the fake asks for (default %(default)s, Discord's)")
    parser.add_argument("--no-echo", action="store_true",
                        help="for comparison: the fake does not send the bot's own messages back (Discord does)")
    parser.add_argument("--status-every", type=float, default=1.0,
                        help="seconds between status samples during a phase; 0 = none (default %(default)s)")
    parser.add_argument("--time-limit", type=float, default=170,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.messages < 1 or args.conversations < 1 or args.agents < 1 or args.rate <= 0:
        parser.error("need messages, conversations, agents >= 1 and rate > 0")
    budget = 20 + (args.messages / args.rate + 10 if "paced" in phases else 0) + (30 if "burst" in phases else 0)
    if budget > args.time_limit:
        parser.error(f"the paced phase alone takes {args.messages / args.rate:.0f} s; this run needs "
                     f"~{budget:.0f} s, over --time-limit {args.time_limit:g} s")
    h.guard(args.time_limit)
    started = time.monotonic()

    warm = layout(0, args.agents, args.agents)  # one conversation per agent
    layouts = {p: layout(i + 1, args.conversations, args.agents) for i, p in enumerate(PHASES)}
    plans = {"paced": schedule("P", layouts["paced"], args.messages, args.rate),
             "burst": schedule("B", layouts["burst"], args.messages, None)}

    summary: dict[str, dict[str, float]] = {}
    with FakeDiscord(heartbeat_ms=args.heartbeat_ms) as fake:
        if args.no_echo:
            drop_echoes(fake)
        for convs in (warm, *layouts.values()):
            add_guild(fake, convs)
        with DiscordDaemon(args.agents, fake, [warm, *layouts.values()]) as daemon:
            daemon.wait_running()
            daemon.wait_ready()
            # Warm-up: one message per agent (in a guild of its own), so first-turn costs and the
            # HTTP connection are not in the figures.
            run_phase("warm-up", daemon, fake, schedule("W", warm, args.agents, None), 30, 0)
            time.sleep(1.0)
            parent = daemon.tree()[0]
            # Baselines: the parent's CPU while idle, and the CPU one status request costs it.
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
                print(f"{p} phase ...", file=sys.stderr, flush=True)
                results.append(run_phase(p, daemon, fake, plans[p], 25, args.status_every, idle_rate))
                time.sleep(1.5)  # a duplicate would show up by now
            spool = daemon.dir / "state" / "spool.db"
            for r in results:
                collect(r, fake, spool)
            if not daemon.alive():
                raise RuntimeError("hermesd died during the run:\n" + daemon.log_tail())
            identified, resumed = fake.identified, fake.resumed
            problems = [line for line in daemon.log_tail(100000).splitlines()
                        if "level=warning" in line or "level=error" in line or "level=" not in line]

    print(f"\nhermesd with {args.agents} echo agents, discord platform against the in-process fake gateway "
          f"+ REST server (heartbeat {args.heartbeat_ms / 1e3:g} s{', no echoes' if args.no_echo else ''}); "
          f"{args.messages:,} messages per phase; "
          f"idle parent CPU {idle_rate * 1e3:.1f} ms/s, one status request {status_cost * 1e3:.1f} ms; "
          f"gateway IDENTIFYs {identified}, RESUMEs {resumed}")
    for r in results:
        summary[r.name] = report(r, idle_rate, status_cost)
    if problems:
        print(f"\ndaemon warnings/errors/stray output ({len(problems)}):")
        for line in problems[:10]:
            print("  " + line)

    print()
    for name, s in summary.items():
        print(f"target [{name}] all answered once: {h.verdict(bool(s['ok']))}; parent CPU "
              f"{s['cpu']:.2f} ms/message ({s['net']:.2f} net); end to end p50 {s['e2e_p50']:,.1f} ms, "
              f"p99 {s['e2e_p99']:,.1f} ms")
    print(f"(whole run {time.monotonic() - started:.0f} s)", flush=True)
    return 0 if all(s["ok"] for s in summary.values()) and identified == 1 and resumed == 0 else 1


if __name__ == "__main__":
    h.run_script(main)
