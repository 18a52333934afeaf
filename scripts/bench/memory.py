#!/usr/bin/env python3
"""Memory and start-up cost of hermesd agents, against standalone Python processes.

Why: the point of the zygote (DESIGN §1) is that an idle agent costs ~1-2 MiB of unique
memory instead of a fresh interpreter.  For each N this starts hermesd with N echo
agents, times spawn -> every agent answered once, lets it settle, and measures the whole
process tree (daemon, zygote, workers) with psutil; then starts N standalone processes
that import what a worker imports and idle in an anyio loop, and measures those the same
way.  PSS is the comparable total (shared pages are split among their sharers); USS is
what one more process really costs.

Targets: idle echo worker <= 2 MiB USS; 100 agents total PSS <= 0.15x 100 standalone;
50 agents started and all answering <= 2 s.

Run with the venv's python:  .venv/bin/python scripts/bench/memory.py [--agents 1,10,50,100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from statistics import fmean as mean

import _harness as h
import psutil

STANDALONE = """\
import signal
import anyio
import workers.main  # noqa: F401  what a worker imports (it pulls in anyio's asyncio backend)
from workers import sandbox
sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the benchmark
async def idle() -> None:
    print("ready", flush=True)
    await anyio.sleep(120)
anyio.run(idle)
"""


@dataclass
class Row:
    """One N: the daemon's tree and the standalone processes, in bytes."""

    n: int
    answered_s: float = 0.0
    tree_pss: int = 0
    parent_pss: int = 0
    zygote_pss: int = 0
    worker_uss: list[int] = field(default_factory=list)
    worker_rss: list[int] = field(default_factory=list)
    alone_pss: int = 0
    alone_uss: list[int] = field(default_factory=list)


def measure_daemon(n: int, settle: float, row: Row, smaps: bool) -> None:
    """Start, time until all N agents answered, settle, measure the tree."""
    with h.Daemon(n) as daemon:
        # Connects as soon as local.sock accepts: the daemon knows its agents before then.
        client = h.LocalClient(daemon.local, timeout=60)
        for i in range(n):  # queued in the daemon until each worker says hello
            client.send(h.session_key(i), "warm", agent=h.agent_id(i))
        texts = client.until_done(n, timeout=60)
        row.answered_s = time.perf_counter() - daemon.spawned_at
        client.close()
        expected = {f"{h.agent_id(i)}: warm" for i in range(n)}
        if set(texts) != expected:
            raise RuntimeError(f"unexpected replies: {sorted(set(texts) ^ expected)[:5]}")
        daemon.wait_running()
        time.sleep(settle)
        mems = h.memory(daemon.tree())
        workers = [m for m in mems if m.title.startswith("hermesd: agent")]
        if len(workers) != n:
            raise RuntimeError(f"expected {n} workers in the tree, found {len(workers)}")
        row.tree_pss = sum(m.pss for m in mems)
        row.parent_pss = sum(m.pss for m in mems if m.pid == daemon.proc.pid)  # type: ignore[union-attr]
        row.zygote_pss = sum(m.pss for m in mems if m.title.startswith("hermesd: zygote"))
        row.worker_uss = [m.uss for m in workers]
        row.worker_rss = [m.rss for m in workers]
        if smaps:
            print(f"\nwhere one idle worker's private memory is (N={n}, pid {workers[0].pid}, "
                  f"USS {workers[0].uss / h.MiB:.2f} MiB), from /proc/<pid>/smaps:")
            for name, size in h.private_by_mapping(workers[0].pid):
                print(f"  {size / 1024:8.0f} KiB  {name}")
            zygote = next(m for m in mems if m.title.startswith("hermesd: zygote"))
            print(f"zygote: RSS {zygote.rss / h.MiB:.1f} MiB, USS {zygote.uss / h.MiB:.1f} MiB")


def measure_standalone(n: int, settle: float, row: Row) -> None:
    """N separate interpreters that import the worker code and idle in an event loop."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", STANDALONE], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, start_new_session=True))
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("a standalone process failed to start")
        time.sleep(settle)
        mems = h.memory([psutil.Process(p.pid) for p in procs])
        row.alone_pss = sum(m.pss for m in mems)
        row.alone_uss = [m.uss for m in mems]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def mib(value: float) -> str:
    return f"{value / h.MiB:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,10,50,100", help="comma-separated N values (default %(default)s)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to idle before measuring")
    parser.add_argument("--no-smaps", action="store_true", help="skip the per-mapping breakdown of a worker")
    parser.add_argument("--time-limit", type=float, default=170,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()
    counts = [int(x) for x in args.agents.split(",") if x.strip()]
    h.guard(args.time_limit)

    rows: list[Row] = []
    for n in counts:
        row = Row(n)
        measure_daemon(n, args.settle, row, smaps=not args.no_smaps and n == max(counts))
        measure_standalone(n, args.settle, row)
        rows.append(row)
        print(f"N={n}: done", file=sys.stderr)

    table = [["N", "start->all answered s", "tree PSS MiB", "parent PSS", "zygote PSS",
              "worker USS mean/max MiB", "worker RSS mean", "standalone PSS MiB",
              "standalone USS mean", "tree/standalone PSS"]]
    for r in rows:
        table.append([
            str(r.n), f"{r.answered_s:.3f}", mib(r.tree_pss), mib(r.parent_pss), mib(r.zygote_pss),
            f"{mean(r.worker_uss) / h.MiB:.2f} / {max(r.worker_uss) / h.MiB:.2f}",
            mib(mean(r.worker_rss)), mib(r.alone_pss), mib(mean(r.alone_uss)), f"{r.tree_pss / r.alone_pss:.3f}",
        ])  # fmt: skip
    print()
    print(h.table(table))
    print()
    worst_uss = max(mean(r.worker_uss) for r in rows)
    print(f"target idle echo worker <= 2 MiB USS: mean USS up to {worst_uss / h.MiB:.2f} MiB "
          f"-> {h.verdict(worst_uss <= 2 * h.MiB)}")
    for r in rows:
        if r.n == 100:
            ratio = r.tree_pss / r.alone_pss
            print(f"target 100 agents PSS <= 0.15x standalone: {ratio:.3f}x -> {h.verdict(ratio <= 0.15)}")
        if r.n == 50:
            print(f"target 50 agents all answering <= 2 s: {r.answered_s:.3f} s -> "
                  f"{h.verdict(r.answered_s <= 2.0)}")
    return 0


if __name__ == "__main__":
    h.run_script(main)
