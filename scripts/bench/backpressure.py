#!/usr/bin/env python3
"""What a stuck agent costs the daemon under a flood, with and without its queue limit.

Why: an agent that stops answering (a hung model call, a bug) must not make the parent
hold an ever-growing backlog, nor slow the other agents down (issue: backpressure).  Agent
a000 is stuck (each turn sleeps an hour); one client floods it with messages while another
keeps asking a001.  "busy" counts the flood messages refused at once: the first with a busy
reply, the rest (within 10 s) with the same text as their error.  Two runs: a000's `max_queue` at its default (100), and at a million
(no limit in practice, the baseline).  Reported per run: messages flooded, how many were
answered "busy" at once, the parent's RSS before and at its highest during the flood, and
a001's round-trip time during the flood against before it.

Run with the venv's python:  .venv/bin/python scripts/bench/backpressure.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from dataclasses import dataclass

import _harness as h
import psutil

from hermesd import protocol


@dataclass
class Run:
    max_queue: int
    flooded: int = 0
    busy: int = 0
    parent_rss_before: int = 0
    parent_rss_max: int = 0
    other_before: float = 0.0  # median round trip of a001, seconds
    other_during: float = 0.0
    seconds: float = 0.0


def median_round_trip(client: h.LocalClient, n: int) -> float:
    return statistics.median(client.round_trip(h.session_key(1), "ping") for _ in range(n))


def flood(path: h.Path, messages: int, run: Run) -> None:
    """Send `messages` to the stuck agent as fast as the socket takes them, reading the
    answers on a thread so the daemon's writes to us never block; return once the busy
    answers have stopped coming for a second."""
    client = h.LocalClient(path)

    def read() -> None:  # blocking reads: the socket has no timeout, so sends may block too
        while True:
            try:
                frame = client.receive(timeout=None)  # type: ignore[arg-type]
            except RuntimeError as exc:  # a LocalDone with an error: refused, the notice given
                run.busy += " is busy " in str(exc)
                continue
            except (ConnectionError, OSError):
                return
            if isinstance(frame, protocol.LocalReply) and " is busy " in frame.text:
                run.busy += 1

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(messages):
        client.send(h.session_key(0), f"flood {i}", agent="a000")
        run.flooded += 1
    seen = -1
    while seen != run.busy:
        seen = run.busy
        time.sleep(1.0)
    client.sock.shutdown(socket.SHUT_RDWR)
    reader.join()
    client.close()


def measure(max_queue: int, messages: int) -> Run:
    run = Run(max_queue)
    settings = {"a000": [f"max_queue = {max_queue}"]}
    with h.Daemon(2, echo_delay={"a000": 3600.0}, settings=settings) as daemon:
        daemon.wait_running()
        parent = psutil.Process(daemon.proc.pid)  # type: ignore[union-attr]
        other = h.LocalClient(daemon.local)
        run.other_before = median_round_trip(other, 200)
        run.parent_rss_before = parent.memory_info().rss
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                run.parent_rss_max = max(run.parent_rss_max, parent.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        flooder = threading.Thread(target=flood, args=(daemon.local, messages, run))
        flooder.start()
        time.sleep(0.2)
        run.other_during = median_round_trip(other, 200)
        flooder.join()
        run.seconds = time.perf_counter() - started
        time.sleep(1.0)  # let the parent settle before the last samples
        sampling.set()
        sampler.join()
        other.close()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    h.guard(600)
    runs = [measure(100, args.messages), measure(1_000_000, args.messages)]
    print(f"{'max_queue':>10} {'flooded':>8} {'busy':>7} {'parent RSS before':>18} {'max':>8} "
          f"{'growth':>8} {'a001 p50 before':>16} {'during':>8} {'ratio':>6} {'seconds':>8}")
    for run in runs:
        growth = run.parent_rss_max - run.parent_rss_before
        print(f"{run.max_queue:>10} {run.flooded:>8} {run.busy:>7} "
              f"{run.parent_rss_before / h.MiB:>16.1f}Mi {run.parent_rss_max / h.MiB:>6.1f}Mi "
              f"{growth / h.MiB:>6.1f}Mi {run.other_before * 1e3:>14.2f}ms "
              f"{run.other_during * 1e3:>6.2f}ms {run.other_during / run.other_before:>6.2f} "
              f"{run.seconds:>8.1f}")
    limited, unlimited = runs
    print(f"parent RSS growth with the limit / without: "
          f"{(limited.parent_rss_max - limited.parent_rss_before) / max(1, unlimited.parent_rss_max - unlimited.parent_rss_before):.2f}")


if __name__ == "__main__":
    h.run_script(main)
