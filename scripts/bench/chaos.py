#!/usr/bin/env python3
"""Chaos at benchmark scale: messages over the local socket while workers and the daemon are
killed with SIGKILL at random, then every reply accounted for.

The driver is tests/chaos.py, the one tests/integration/test_chaos.py runs with 2,000
messages; its docstring says what counts as accepted, lost, duplicated and resent.  Here the
size, the pace and the fault rates are options, and the seed is printed so that a run's
fault sequence (which agent, which kind, how far apart) can be repeated.  Timing still
varies between runs, so the moment each fault lands does too.

Run with the venv's python:  .venv/bin/python scripts/bench/chaos.py      (~60 s)
Exit code 0 if nothing was lost or duplicated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests is not an installed package

from tests import chaos  # noqa: E402
from tests.harness import Daemon  # noqa: E402

# The Plan fields that are options here, with what they mean; defaults are the Plan's
# except where BENCH_DEFAULTS says otherwise.
OPTIONS = {
    "messages": "messages to drive",
    "clients": "concurrent clients, one connection each",
    "sessions": "session keys per client",
    "window": "messages a client has awaiting answers",
    "rate": "messages/s offered over all clients; 0 = as fast as answered",
    "worker_kill_every": "mean seconds between worker kills; 0 = none",
    "parent_kill_every": "mean seconds between daemon kills; 0 = none",
    "settle_timeout": "seconds allowed after the last message for every answer",
}
BENCH_DEFAULTS = {"messages": 5000, "rate": 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, meaning in OPTIONS.items():
        default = BENCH_DEFAULTS.get(name, getattr(chaos.Plan, name))
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                            help=f"{meaning} (default %(default)s)")
    parser.add_argument("--seed", type=int, help="fault sequence seed (default: random, printed)")
    parser.add_argument("--time-limit", type=float, default=600,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()
    if min(args.messages, args.clients, args.sessions, args.window) < 1 or args.rate < 0:
        parser.error("need messages, clients, sessions, window >= 1 and rate >= 0")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4))
    plan = chaos.Plan(seed=seed, **{name: getattr(args, name) for name in OPTIONS})
    print(f"seed {seed}; {plan}", flush=True)
    h.guard(args.time_limit)
    # AF_UNIX paths are limited to 108 bytes: a short dir of our own under /tmp.
    daemon = Daemon(Path(tempfile.mkdtemp(prefix="hd-chaos-", dir="/tmp")))
    try:
        report = chaos.run(daemon, plan)
    finally:
        tree = daemon.children()
        daemon.stop()
        h.kill_processes(tree)
        shutil.rmtree(daemon.root, ignore_errors=True)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
