#!/usr/bin/env python3
"""What the `openai` runtime costs inside its worker: memory, and time per turn without the model.

(1) memory: hermesd with N `runtime = "openai"` agents whose `[llm.default]` is an
    in-process fake OpenAI server on 127.0.0.1 (tests/fakes/openai_server.py), plus echo
    agents as a baseline, in the same daemon.  USS of every worker is read once when all
    are running and idle (1 s settle, no message yet), and again after each agent has
    answered one message sent through local.sock with the agent pinned (1 s settle).

(1b) fork: where the first turn's memory goes.  A fresh interpreter plays the zygote
    (warm_up(), gc.collect(), gc.freeze(); optionally also importing what httpx imports
    lazily, or also sending 3 completions through an LLMClient) and forks 2 echo and 2
    openai children that each build an AgentHome, idle, answer one message from the fake
    server, and report their USS.

(2) turn: no daemon.  An AgentHome built by `workers.main._make_home` on a temp
    workspace, an OpenAIRuntime whose LLMClient sits on an `httpx.MockTransport` that
    returns a fixed completion at once (so the model costs ~0 and what is timed is the
    worker: command check, state.db reads and writes, system prompt, request encoding,
    response decoding).  Each scenario is a fresh workspace; 1,000 turns of
    `runtime.turn(Deliver(...))` in one session are timed one by one, after 10 warm-up
    turns.  Scenarios: 0 stored messages (baseline); 10,000 messages spread over 50
    sessions, turns continuing one of them; 10,000 messages all in the session the turns
    go to (the worst case for anything that scales with a session's length).

Targets (issue): idle openai worker <= 10 MiB USS; per-turn overhead p99 <= 5 ms with
10k stored messages.

Run with the venv's python:  .venv/bin/python scripts/bench/turn.py [--part memory|fork|turn]
State lives in $TMPDIR (TMPDIR=/dev/shm for tmpfs); every temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean as mean
from typing import Any

import _harness as h
import anyio
import httpx
import msgspec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.fakes is not an installed package

from hermesd import protocol
from hermesd.config import ALL_TOOLS
from tests.fakes.openai_server import FakeOpenAI
from workers.llm import LLMClient
from workers.main import _make_home
from workers.runtimes import openai as openai_runtime
from workers.runtimes.home import AgentHome
from workers.runtimes.openai import OpenAIRuntime

# ----------------------------------------------------------------------------- (1) memory


class OpenAIDaemon(h.Daemon):
    """h.Daemon with openai agents o000.. on [llm.default] and echo agents e000.."""

    def __init__(self, openai_agents: int, echo_agents: int, llm_url: str) -> None:
        super().__init__(openai_agents + echo_agents)
        self.openai_ids = [f"o{i:03d}" for i in range(openai_agents)]
        self.echo_ids = [f"e{i:03d}" for i in range(echo_agents)]
        self.llm_url = llm_url

    def write_config(self) -> None:
        lines = [
            *self.daemon_section(),
            "[platforms.local]",
            "[llm.default]",
            f'base_url = "{self.llm_url}"',
            'model = "bench-model"',
            "timeout = 10",
            "max_retries = 0",
        ]
        for agent in self.openai_ids:
            lines += [f"[agents.{agent}]", 'runtime = "openai"']
        for agent in self.echo_ids:
            lines += [f"[agents.{agent}]", 'runtime = "echo"']
        self.config.write_text("\n".join(lines) + "\n")


@dataclass
class MemoryResult:
    idle: dict[str, int] = field(default_factory=dict)  # agent -> USS bytes
    answered: dict[str, int] = field(default_factory=dict)
    smaps: list[tuple[str, int]] = field(default_factory=list)
    smaps_pid: int = 0


def worker_uss(daemon: OpenAIDaemon) -> dict[str, int]:
    pids = daemon.pids()
    by_pid = {m.pid: m.uss for m in h.memory(daemon.tree())}
    missing = [agent for agent, pid in pids.items() if pid not in by_pid]
    if missing:
        raise RuntimeError(f"workers not found in the process tree: {missing}")
    return {agent: by_pid[pid] for agent, pid in pids.items()}


def measure_memory(openai_agents: int, echo_agents: int, settle: float, smaps: bool) -> MemoryResult:
    result = MemoryResult()
    with FakeOpenAI() as fake, OpenAIDaemon(openai_agents, echo_agents, fake.url) as daemon:
        daemon.wait_running()  # before any message: pinned sends before this are refused
        time.sleep(settle)
        result.idle = worker_uss(daemon)
        client = h.LocalClient(daemon.local, timeout=30)
        try:
            for agent in daemon.openai_ids + daemon.echo_ids:
                texts = client.request(f"local:bench-{agent}", "hello", agent=agent)
                expected = "fake: hello" if agent.startswith("o") else f"{agent}: hello"
                if texts != [expected]:
                    raise RuntimeError(f"{agent} answered {texts!r}, expected {expected!r}")
        finally:
            client.close()
        if len(fake.requests("bench-model")) != openai_agents:
            raise RuntimeError("the fake server did not see one request per openai agent")
        time.sleep(settle)
        result.answered = worker_uss(daemon)
        if smaps and daemon.openai_ids:
            result.smaps_pid = daemon.pids()[daemon.openai_ids[0]]
            result.smaps = h.private_by_mapping(result.smaps_pid)
    return result


def report_memory(result: MemoryResult, args: argparse.Namespace) -> list[str]:
    def row(name: str, when: dict[str, int], prefix: str) -> list[str]:
        values = [uss for agent, uss in when.items() if agent.startswith(prefix)]
        return [name, str(len(values)), f"{mean(values) / h.MiB:.2f}", f"{min(values) / h.MiB:.2f}",
                f"{max(values) / h.MiB:.2f}"]

    rows = [["worker USS (MiB)", "n", "mean", "min", "max"],
            row("openai, idle (no message yet)", result.idle, "o"),
            row("openai, after 1 message", result.answered, "o"),
            row("echo, idle (no message yet)", result.idle, "e"),
            row("echo, after 1 message", result.answered, "e")]
    print(f"\n(1) memory: {args.agents} openai + {args.echo_agents} echo agents in one daemon, "
          f"fake OpenAI on 127.0.0.1, settle {args.settle:g} s")
    print(h.table(rows))
    if result.smaps:
        print(f"\nwhere one openai worker's private memory is after 1 message (pid {result.smaps_pid}, "
              f"USS {result.answered['o000'] / h.MiB:.2f} MiB), from /proc/<pid>/smaps:")
        for name, size in result.smaps:
            print(f"  {size / 1024:8.0f} KiB  {name}")
    idle = [uss for agent, uss in result.idle.items() if agent.startswith("o")]
    answered = [uss for agent, uss in result.answered.items() if agent.startswith("o")]
    before = (f"target idle openai worker <= 10 MiB USS, before any message: mean {mean(idle) / h.MiB:.2f} MiB, "
              f"max {max(idle) / h.MiB:.2f} MiB -> {h.verdict(max(idle) <= 10 * h.MiB)}")
    after = (f"  same, idle again after 1 message: mean {mean(answered) / h.MiB:.2f} MiB, "
             f"max {max(answered) / h.MiB:.2f} MiB -> {h.verdict(max(answered) <= 10 * h.MiB)}")
    return [before, after]


# ----------------------------------------------------------------------------- (1b) fork

FORK_VARIANTS = {
    "plain": "what the zygote does now: warm_up() (an echo turn), gc.collect(), gc.freeze()",
    "+imports": "... and import httpcore, h11, certifi (httpx imports them when the first client is built)",
    "+requests": "... and send 3 completions through an LLMClient to the fake server",
}


def fork_variant(variant: str, llm_url: str, workdir: Path, siblings: int, settle: float) -> None:
    """Runs in a fresh interpreter (`--fork-variant`): become a zygote-like parent, fork
    `siblings` echo and openai children, print their USS idle and after one turn as JSON.
    The parent only waits on pipes after the fork, and siblings share what it writes."""
    import gc
    import os
    import pickle
    import signal
    import traceback

    import psutil

    from workers import runtimes, sandbox
    from workers.agent import Agent
    from workers.ledger import Ledger
    from workers.llm import ChatMessage
    from workers.main import warm_up

    warm_up()
    if variant in ("+imports", "+requests"):
        import certifi
        import h11
        import httpcore._backends.anyio

        del certifi, h11, httpcore  # only their being imported matters
    if variant == "+requests":
        async def prewarm() -> None:
            async with LLMClient(protocol.LLMSpec(base_url=llm_url, model="bench-model")) as client:
                for _ in range(3):
                    await client.complete([ChatMessage(role="user", content="hi")])
        anyio.run(prewarm)
    gc.collect()
    gc.freeze()

    def child(kind: str, index: int, write: int) -> None:
        sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the benchmark

        async def go() -> None:
            llm = protocol.LLMSpec(base_url=llm_url, model="bench-model", max_retries=0) if kind == "openai" else None
            spec = protocol.WorkerSpec(agent_id=f"{kind}{index}", runtime=kind, llm=llm, tools=ALL_TOOLS,
                                       workspace=str(workdir / f"{kind}{index}"))
            home = _make_home(spec, lambda frame: None)
            agent = Agent(runtimes.load(home), Ledger(home.state), lambda frame: None)
            await anyio.sleep(settle / 2)
            idle = psutil.Process().memory_full_info().uss
            async with anyio.create_task_group() as task_group:
                agent.deliver(protocol.Deliver(msg_id=1, platform="local", session_key="local:k", text="hello"),
                              task_group)
            await anyio.sleep(settle)
            os.write(write, pickle.dumps((idle, psutil.Process().memory_full_info().uss)))

        anyio.run(go)

    children = []
    running: set[int] = set()  # forked and not yet reaped
    try:
        for kind in ("echo", "openai"):
            for index in range(siblings):
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        os.close(read)
                        child(kind, index, write)
                    except BaseException:  # noqa: BLE001  (the parent reports the failure)
                        traceback.print_exc()
                        code = 1
                    finally:
                        os._exit(code)
                running.add(pid)
                os.close(write)
                children.append((kind, read, pid))
        out: dict[str, list[tuple[int, int]]] = {"echo": [], "openai": []}
        for kind, read, pid in children:
            data = b""
            while chunk := os.read(read, 65536):
                data += chunk
            os.close(read)
            os.waitpid(pid, 0)
            running.discard(pid)
            if not data:
                raise RuntimeError(f"a {kind} child failed")
            out[kind].append(pickle.loads(data))
        print(msgspec.json.encode(out).decode())
    finally:
        for pid in running:  # only on failure: our own unreaped children, so the pid is theirs
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def measure_fork(args: argparse.Namespace) -> list[str]:
    import subprocess

    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="hermesd-bench-fork-"))
    try:
        with FakeOpenAI() as fake:
            for variant in FORK_VARIANTS:
                # run() kills the child if this raises (time limit); its children die with it
                done = subprocess.run(
                    [sys.executable, __file__, "--fork-variant", variant, "--llm-url", fake.url,
                     "--workdir", str(workdir / variant), "--settle", str(args.settle)],
                    capture_output=True, timeout=30, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"fork variant {variant} failed:\n{done.stderr.decode()[-2000:]}")
                results[variant] = msgspec.json.decode(done.stdout.splitlines()[-1])
                print(f"fork variant {variant}: done", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [["zygote-like parent", "echo idle", "echo after 1 turn", "openai idle", "openai after 1 turn",
             "openai turn adds"]]
    for variant, out in results.items():
        echo_idle, echo_after, idle, after = (mean(pair[i] for pair in out[kind]) / h.MiB
                                              for kind in ("echo", "openai") for i in (0, 1))
        rows.append([variant, f"{echo_idle:.2f}", f"{echo_after:.2f}", f"{idle:.2f}", f"{after:.2f}",
                     f"+{after - idle:.2f}"])
    print("\n(1b) where the first turn's memory goes: USS (MiB) of children forked from a zygote-like "
          f"parent, 2 siblings each, one turn (fake OpenAI), settle {args.settle:g} s")
    for variant, text in FORK_VARIANTS.items():
        print(f"  {variant:10s} {text}")
    print(h.table(rows))
    return []


# ----------------------------------------------------------------------------- (2) turn

REPLY = ("Sure. Here is a short answer of about the length a chat model gives: two sentences, "
         "some detail, and a question back to the user at the end. Does that help?")
COMPLETION = msgspec.json.encode({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench-model",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": REPLY}}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240},
})
WORDS = ("the", "a", "to", "and", "of", "in", "is", "it", "you", "that", "for", "on", "with", "this",
         "be", "are", "was", "have", "not", "but", "what", "can", "agent", "model", "memory", "message",
         "session", "search", "server", "python", "daemon", "worker", "tea", "coffee", "plan", "meeting",
         "tomorrow", "schedule", "report", "build", "test", "deploy", "error", "file", "config", "budget",
         "travel", "train", "ticket", "weather", "recipe", "garden", "invoice", "pelican", "launch", "code",
         "review", "branch")
FIRST_TURN_MSG_ID = 1_000_000  # above every prefilled msg_id


def answer_instantly(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=COMPLETION, headers={"Content-Type": "application/json"})


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def prefill(home: AgentHome, stored: int, sessions: int, seed: int = 1) -> None:
    """`stored` messages over `sessions` sessions (local:old-0 ..), alternating a ~100-char
    user message and a ~400-char assistant answer, in one transaction; the FTS5 index is
    filled by the schema's trigger, as it is for `Sessions.append`."""
    rng = random.Random(seed)
    now = time.time()
    db = home.state.db
    with home.state.transaction():
        db.executemany("INSERT INTO sessions (id, session_key, started_at) VALUES (?, ?, ?)",
                       [(i + 1, f"local:old-{i}", now - 86400) for i in range(sessions)])
        rows = []
        for n in range(stored):
            session = n % sessions + 1
            position = n // sessions  # the n-th message of its session
            role = "user" if position % 2 == 0 else "assistant"
            text = sentence(rng, 16) if role == "user" else " ".join(sentence(rng, 14) for _ in range(4))
            msg_id = (session - 1) * stored + position // 2 + 1
            rows.append((session, role, text, msg_id, now - 86400 + n))
        db.executemany("INSERT INTO messages (session_id, role, content, msg_id, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Phases:
    """Wall time per named call during the turns (a perf_counter pair per call, ~1 µs)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start
        return timed


class TimedClient:
    """The real LLMClient (on the mock transport), with the time spent in `complete`."""

    def __init__(self, inner: LLMClient, phases: Phases) -> None:
        self.inner, self.phases = inner, phases

    async def complete(self, messages: Any, tools: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return await self.inner.complete(messages, tools)
        finally:
            name = "llm client (httpx mock + JSON)"
            self.phases.spent[name] = self.phases.spent.get(name, 0.0) + time.perf_counter() - start


@dataclass
class Scenario:
    name: str
    stored: int  # messages in state.db before the first timed turn
    sessions: int  # they are spread over this many sessions
    session_key: str  # the one session the turns go to
    turn_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this thread's CPU time in each turn
    phases_ms: dict[str, float] = field(default_factory=dict)  # mean per turn
    final_in_session: int = 0
    db_bytes: int = 0


PHASES = ("commands.handle", "sessions.current", "sessions.forget_attempt", "sessions.history",
          "  of which sessions.info (count)", "sessions.append (x2)", "system_prompt",
          "llm client (httpx mock + JSON)", "sessions.add_usage")


async def run_scenario(scenario: Scenario, turns: int, warmup: int, workdir: Path) -> None:
    llm = protocol.LLMSpec(base_url="http://llm.invalid/v1", model="bench-model", max_retries=0)
    spec = protocol.WorkerSpec(agent_id="bench", runtime="openai", workspace=str(workdir), llm=llm,
                               tools=ALL_TOOLS)  # what the config gives an agent by default
    home = _make_home(spec, lambda frame: None)
    if scenario.stored:
        prefill(home, scenario.stored, scenario.sessions)
    runtime = OpenAIRuntime(home)
    phases = Phases()
    client = LLMClient(llm, timeout=llm.timeout, max_retries=0, transport=httpx.MockTransport(answer_instantly))
    runtime._client = TimedClient(client, phases)  # type: ignore[assignment]
    # Instrument the calls one turn makes (instance attributes and the runtime module's
    # globals; nothing on disk changes).
    sessions = home.sessions
    for name in ("current", "forget_attempt", "history", "append", "add_usage"):
        setattr(sessions, name, phases.wrap(f"sessions.{name}", getattr(sessions, name)))
    sessions.info = phases.wrap("  of which sessions.info (count)", sessions.info)  # type: ignore[method-assign]
    saved = openai_runtime.system_prompt, openai_runtime.commands.handle
    openai_runtime.system_prompt = phases.wrap("system_prompt", saved[0])  # type: ignore[assignment]
    openai_runtime.commands.handle = phases.wrap("commands.handle", saved[1])  # type: ignore[assignment]
    try:
        msg_id = FIRST_TURN_MSG_ID
        rng = random.Random(2)
        for i in range(warmup + turns):
            if i == warmup:
                phases.spent.clear()
            message = protocol.Deliver(msg_id=msg_id, platform="local", session_key=scenario.session_key,
                                       text=sentence(rng, 16))
            msg_id += 1
            start, cpu = time.perf_counter(), time.thread_time()
            replies = [say.text async for say in runtime.turn(message)]
            elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
            if replies != [REPLY]:
                raise RuntimeError(f"turn {i} answered {replies!r}")
            if i >= warmup:
                scenario.turn_ms.append(elapsed * 1e3)
                scenario.cpu_ms.append(cpu * 1e3)
        spent = dict(phases.spent)
        spent["sessions.append (x2)"] = spent.pop("sessions.append", 0.0)
        scenario.phases_ms = {name: spent.get(name, 0.0) / turns * 1e3 for name in PHASES}
        session_id = home.sessions.current(scenario.session_key)
        scenario.final_in_session = home.sessions.info(session_id).messages
    finally:
        openai_runtime.system_prompt, openai_runtime.commands.handle = saved
        await client.aclose()
        home.state.db.close()
    scenario.db_bytes = sum(p.stat().st_size for p in workdir.glob("state.db*"))


def measure_turns(args: argparse.Namespace) -> list[Scenario]:
    scenarios = [
        Scenario("0 stored (baseline)", 0, 1, "local:bench"),
        Scenario(f"{args.stored:,} stored / {args.sessions} sessions", args.stored, args.sessions,
                 "local:old-0"),
        Scenario(f"{args.stored:,} stored in this session", args.stored, 1, "local:old-0"),
    ]
    if args.no_long_session:
        scenarios.pop()
    for scenario in scenarios:
        workdir = Path(tempfile.mkdtemp(prefix="hermesd-bench-turn-"))
        try:
            anyio.run(run_scenario, scenario, args.turns, args.warmup, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"turn scenario '{scenario.name}': done", file=sys.stderr)
    return scenarios


def report_turns(scenarios: list[Scenario], args: argparse.Namespace) -> list[str]:
    base = scenarios[0]
    stats = [h.summary_ms([t / 1e3 for t in s.turn_ms]) for s in scenarios]
    rows = [["scenario", "p50 ms", "p99 ms", "max ms", "mean ms", "p99 / baseline p99", "turns > 5 ms",
             "CPU p50 ms", "CPU p99 ms", "msgs in session at end", "state.db* MiB"]]
    for s, st in zip(scenarios, stats, strict=True):
        cpu = h.summary_ms([t / 1e3 for t in s.cpu_ms])
        rows.append([s.name, f"{st['p50']:.3f}", f"{st['p99']:.3f}", f"{st['max']:.3f}", f"{st['mean']:.3f}",
                     f"{st['p99'] / stats[0]['p99']:.2f}x", str(sum(t > 5.0 for t in s.turn_ms)),
                     f"{cpu['p50']:.3f}", f"{cpu['p99']:.3f}", f"{s.final_in_session:,}",
                     f"{s.db_bytes / h.MiB:.1f}"])
    print(f"\n(2) turn: {args.turns} timed turns per scenario (after {args.warmup} warm-up turns), "
          "model answered instantly by httpx.MockTransport; state in "
          f"{tempfile.gettempdir()}")
    print(h.table(rows))
    print("\nmean ms per turn by call (instrumented in the same run):")
    rows = [["call", *[s.name for s in scenarios]]]
    for name in PHASES:
        rows.append([name, *[f"{s.phases_ms[name]:.3f}" for s in scenarios]])
    accounted = [sum(v for k, v in s.phases_ms.items() if not k.startswith(" ")) for s in scenarios]
    rows.append(["rest of turn (not in a call above)",
                 *[f"{mean(s.turn_ms) - a:.3f}" for s, a in zip(scenarios, accounted, strict=True)]])
    print(h.table(rows))
    lines = []
    for s, st in zip(scenarios[1:], stats[1:], strict=True):
        lines.append(f"ratio '{s.name}' / baseline: p50 {st['p50'] / stats[0]['p50']:.2f}x, "
                     f"p99 {st['p99'] / stats[0]['p99']:.2f}x")
    spread = stats[1] if len(stats) > 1 else stats[0]
    lines.append(f"target per-turn overhead p99 <= 5 ms with {args.stored:,} stored messages "
                 f"({scenarios[1].name if len(scenarios) > 1 else base.name}): {spread['p99']:.3f} ms -> "
                 f"{h.verdict(spread['p99'] <= 5.0)}")
    if len(stats) > 2:
        lines.append(f"  same, all {args.stored:,} in the turn's session: {stats[2]['p99']:.3f} ms -> "
                     f"{h.verdict(stats[2]['p99'] <= 5.0)}")
    return lines


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "memory", "fork", "turn"), default="all",
                        help="which measurement to run (default %(default)s)")
    parser.add_argument("--agents", type=int, default=10, help="openai agents in the daemon (default %(default)s)")
    parser.add_argument("--echo-agents", type=int, default=1,
                        help="echo agents in the same daemon, the baseline (default %(default)s)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds idle before each memory reading")
    parser.add_argument("--no-smaps", action="store_true", help="skip the per-mapping breakdown of a worker")
    parser.add_argument("--turns", type=int, default=1000, help="timed turns per scenario (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed turns first (default %(default)s)")
    parser.add_argument("--stored", type=int, default=10_000, help="messages stored before the turns")
    parser.add_argument("--sessions", type=int, default=50, help="sessions they are spread over")
    parser.add_argument("--no-long-session", action="store_true",
                        help="skip the scenario with every stored message in the turn's session")
    parser.add_argument("--time-limit", type=float, default=58,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    parser.add_argument("--fork-variant", choices=FORK_VARIANTS, help=argparse.SUPPRESS)  # internal
    parser.add_argument("--llm-url", help=argparse.SUPPRESS)  # internal, with --fork-variant
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)  # internal, with --fork-variant
    args = parser.parse_args()
    if args.fork_variant:
        fork_variant(args.fork_variant, args.llm_url, args.workdir, 2, args.settle)
        return 0
    if args.agents < 1 or args.turns < 1 or args.stored < args.sessions or args.sessions < 1:
        parser.error("need --agents >= 1, --turns >= 1 and --stored >= --sessions >= 1")
    h.guard(args.time_limit)
    started = time.monotonic()
    verdicts: list[str] = []
    if args.part in ("all", "memory"):
        result = measure_memory(args.agents, args.echo_agents, args.settle, smaps=not args.no_smaps)
        verdicts += report_memory(result, args)
    if args.part in ("all", "fork"):
        verdicts += measure_fork(args)
    if args.part in ("all", "turn"):
        verdicts += report_turns(measure_turns(args), args)
    print()
    print("\n".join(verdicts))
    print(f"(total {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    h.run_script(main)
