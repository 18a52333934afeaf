#!/usr/bin/env python3
"""Memory of N Hermes agents on Telegram: N stock Hermes gateways against one hermesd.

Why: the headline claim of hermesd is that many Hermes agents cost a fraction of running
one Hermes gateway per agent, as Hermes users do today (`hermes -p <profile> gateway run`,
one bot token each).  Both sides do the same work with the same hermes-agent version:
Telegram long polling against the fake Bot API (tests/fakes/telegram_server.py), one turn
per agent against the fake OpenAI-compatible server (tests/fakes/openai_server.py), then
idle for --settle seconds before psutil reads PSS and USS of every process of the tree.

  gateways  N `hermes -p gw<i> gateway run` processes from a separate venv with
            hermes-agent[messaging] (its python-telegram-bot gateway), N profiles under one
            temporary HOME, one bot token each; one private message per bot.
  hermesd   one daemon with N `runtime = "hermes"` agents and one bot token; agent i gets
            its own forum chat (routed by `telegram:topic:<chat>:<topic>`), one message each.

Both sides get the same side-effect switches in config.yaml (workers/hermes_home.py
SETTINGS and DEFAULTS, plus its ENVIRONMENT), so neither probes the machine, installs
anything or runs background curation.  The two fakes run inside this process and are not
counted.

Target (issue 9): hermesd total PSS <= 0.3x the gateways' total PSS at N = 10.

Run with the venv's python (the gateway venv defaults to /work/scratch-hermes/gw-venv):
  .venv/bin/python scripts/bench/hermes_memory.py [--agents 1,5,10] [--gateway-venv DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean as mean

import _harness as h
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.fakes is not an installed package

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram
from workers import hermes_home

USER = 42  # the one allowed user; every message is from them
MODEL = "bench-model"
DAEMON_TOKEN = "700000:hermesd-bench"
MARK = re.compile(r"\b(M\d+x\d+)\b")  # each message's id (no Markdown-escaped characters); the fake LLM echoes it
NO_DOH = {  # the gateway resolves Telegram's IPs over DNS-over-HTTPS unless given some and told not to use them
    "TELEGRAM_FALLBACK_IPS": "149.154.167.220", "HERMES_TELEGRAM_DISABLE_FALLBACK_IPS": "1"}


def gateway_token(i: int) -> str:
    return f"{710000 + i}:gateway-bench"


def chat_id(i: int) -> int:
    return -(1001000000000 + i)  # a supergroup (forum) per hermesd agent


@dataclass
class Row:
    """One N, in bytes."""

    n: int
    gw_pss: int = 0
    gw_uss: list[int] = field(default_factory=list)  # per gateway (its whole tree)
    gw_procs: int = 0
    gw_answered_s: float = 0.0
    d_pss: int = 0
    d_parent_pss: int = 0
    d_zygote_pss: int = 0
    d_uss: list[int] = field(default_factory=list)  # per worker, after its turn
    d_idle_uss: list[int] = field(default_factory=list)  # per worker, before any message
    d_answered_s: float = 0.0

    @property
    def ratio(self) -> float:
        return self.d_pss / self.gw_pss


# ----------------------------------------------------------------------------- replies


def wait_answered(fake: FakeTelegram, marks: set[str], timeout: float, alive: object) -> None:
    """Until every mark is in a sent message (a reply, since only the fake LLM echoes it)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {m[1] for c in fake.calls("sendMessage") if c["status"] == 200
                for m in MARK.finditer(str(c["params"].get("text", "")))}
        if marks <= seen:
            return
        if not alive():  # type: ignore[operator]
            raise RuntimeError("a process under test exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply for {sorted(marks - seen)[:5]} after {timeout:g} s")
        time.sleep(0.1)


def polling(fake: FakeTelegram, tokens: list[str]) -> bool:
    with fake.cond:
        return all(fake.polls.get(token) for token in tokens)


def settings() -> dict[str, dict[str, object]]:
    """hermesd's side-effect switches, so both sides run hermes-agent alike."""
    return {**hermes_home.DEFAULTS, **hermes_home.SETTINGS}


# ----------------------------------------------------------------------------- gateways


class Gateways(h.Started):
    """N stock Hermes gateways, profiles gw000.. under one temporary HOME."""

    def __init__(self, n: int, venv: Path, fake: FakeTelegram, llm: FakeOpenAI) -> None:
        self.n, self.venv, self.fake, self.llm = n, venv, fake, llm
        self.home = Path(tempfile.mkdtemp(prefix="hermes-gw-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._seen: list[psutil.Process] = []

    def profile(self, i: int) -> Path:
        path = self.home / ".hermes" / "profiles" / f"gw{i:03d}"
        path.mkdir(parents=True)
        config = settings()
        config["model"] = {**config["model"], "provider": "custom", "base_url": self.llm.url,
                           "default": MODEL, "api_key": "none"}
        config["platforms"] = {"telegram": {"enabled": True, "extra": {
            "base_url": self.fake.url, "base_file_url": self.fake.file_url}}}
        (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        # What `hermes gateway setup` writes; the home channel stops a first-message notice.
        (path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={gateway_token(i)}\nTELEGRAM_ALLOWED_USERS={USER}\n"
                                   f"TELEGRAM_HOME_CHANNEL={USER}\n")
        return path

    def start(self) -> None:
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
               **hermes_home.ENVIRONMENT, **NO_DOH}
        for i in range(self.n):
            self.profile(i)
            with open(self.home / f"gw{i:03d}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [str(self.venv / "bin" / "hermes"), "-p", f"gw{i:03d}", "gateway", "run"],
                    env=env, cwd=self.home, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True))

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def trees(self) -> list[list[psutil.Process]]:
        out = []
        for proc in self.procs:
            root = psutil.Process(proc.pid)
            tree = [root, *root.children(recursive=True)]
            self._seen += [p for p in tree if p not in self._seen]
            out.append(tree)
        return out

    def log_tail(self, lines: int = 15) -> str:
        path = self.home / "gw000.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        try:
            self.trees()
        except psutil.Error:
            pass
        h.kill_processes(self._seen + [psutil.Process(p.pid) for p in self.procs if p.poll() is None])
        for proc in self.procs:
            proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)



def measure_gateways(row: Row, venv: Path, fake: FakeTelegram, llm: FakeOpenAI, settle: float) -> None:
    tokens = [gateway_token(i) for i in range(row.n)]
    with Gateways(row.n, venv, fake, llm) as gateways:
        started = time.perf_counter()
        deadline = time.monotonic() + 120
        while not polling(fake, tokens):
            if not gateways.alive() or time.monotonic() > deadline:
                raise RuntimeError("gateways not all polling:\n" + gateways.log_tail())
            time.sleep(0.1)
        marks = {f"M{row.n}x{i}" for i in range(row.n)}
        for i, token in enumerate(tokens):
            fake.private_message(USER, f"M{row.n}x{i} hello", token=token)
        wait_answered(fake, marks, 120, gateways.alive)
        row.gw_answered_s = time.perf_counter() - started
        time.sleep(settle)
        for tree in gateways.trees():
            mems = h.memory(tree)
            row.gw_pss += sum(m.pss for m in mems)
            row.gw_uss.append(sum(m.uss for m in mems))
            row.gw_procs += len(mems)


# ----------------------------------------------------------------------------- hermesd


class HermesDaemon(h.Daemon):
    """The harness daemon with N hermes agents on one Telegram bot, one forum chat each."""

    def __init__(self, agents: int, fake: FakeTelegram, llm: FakeOpenAI) -> None:
        super().__init__(agents)
        self.fake, self.llm = fake, llm

    def write_config(self) -> None:
        token_file = self.dir / "telegram.token"
        token_file.write_text(DAEMON_TOKEN + "\n")
        lines = [
            *self.daemon_section(),
            "[platforms.telegram]", f'token_file = "{token_file}"', f'api_base = "{self.fake.url}"',
            f"allowed_users = [{USER}]",
            "[llm.default]", f'base_url = "{self.llm.url}"', f'model = "{MODEL}"',
        ]
        for i in range(self.agents):
            lines += [f"[agents.{h.agent_id(i)}]", 'runtime = "hermes"']
            lines += ["[[routes]]", f'match = "telegram:topic:{chat_id(i)}:100"', f'agent = "{h.agent_id(i)}"']
        self.config.write_text("\n".join(lines) + "\n")


def workers_of(mems: list[h.Mem]) -> list[h.Mem]:
    return [m for m in mems if m.title.startswith("hermesd: agent")]


def measure_hermesd(row: Row, fake: FakeTelegram, llm: FakeOpenAI, settle: float, smaps: bool) -> None:
    with HermesDaemon(row.n, fake, llm) as daemon:
        daemon.wait_running(120)
        deadline = time.monotonic() + 60
        while not polling(fake, [DAEMON_TOKEN]):
            if not daemon.alive() or time.monotonic() > deadline:
                raise RuntimeError("hermesd not polling:\n" + daemon.log_tail())
            time.sleep(0.1)
        time.sleep(settle)
        row.d_idle_uss = [m.uss for m in workers_of(h.memory(daemon.tree()))]
        marks = {f"M{row.n}x{i}" for i in range(row.n)}
        for i in range(row.n):
            fake.topic_message(chat_id(i), 100, USER, f"M{row.n}x{i} hello", mention=True, token=DAEMON_TOKEN)
        wait_answered(fake, marks, 120, daemon.alive)
        row.d_answered_s = time.perf_counter() - daemon.spawned_at - settle  # not the idle wait
        time.sleep(settle)
        mems = h.memory(daemon.tree())
        workers = workers_of(mems)
        if len(workers) != row.n or len(row.d_idle_uss) != row.n:
            raise RuntimeError(f"expected {row.n} workers in the tree, found {len(workers)}")
        row.d_pss = sum(m.pss for m in mems)
        row.d_parent_pss = sum(m.pss for m in mems if m.pid == daemon.proc.pid)  # type: ignore[union-attr]
        row.d_zygote_pss = sum(m.pss for m in mems if m.title.startswith("hermesd: zygote"))
        row.d_uss = [m.uss for m in workers]
        if smaps:
            print(f"\nwhere one hermes worker's private memory is after its turn (N={row.n}, pid {workers[0].pid}, "
                  f"USS {workers[0].uss / h.MiB:.1f} MiB), from /proc/<pid>/smaps:")
            for name, size in h.private_by_mapping(workers[0].pid, top=8):
                print(f"  {size / 1024:8.0f} KiB  {name}")


# ----------------------------------------------------------------------------- main


def mib(value: float) -> str:
    return f"{value / h.MiB:.1f}"


def report(rows: list[Row]) -> None:
    table = [["N", "gateways PSS MiB", "gateway USS mean MiB", "gw procs", "hermesd PSS MiB", "parent PSS",
              "zygote PSS", "worker USS idle", "worker USS mean/max MiB", "hermesd/gateways PSS"]]
    for r in rows:
        table.append([str(r.n), mib(r.gw_pss), mib(mean(r.gw_uss)), str(r.gw_procs), mib(r.d_pss),
                      mib(r.d_parent_pss), mib(r.d_zygote_pss), mib(mean(r.d_idle_uss)),
                      f"{mean(r.d_uss) / h.MiB:.1f} / {max(r.d_uss) / h.MiB:.1f}", f"{r.ratio:.3f}"])
    print()
    print(h.table(table))
    print()
    for r in rows:
        print(f"N={r.n}: all answered after {r.gw_answered_s:.1f} s (gateways) "
              f"and {r.d_answered_s:.1f} s (hermesd), from spawn")
    for r in rows:
        if r.n == 10:
            print(f"target hermesd <= 0.3x gateways' PSS at N=10: {r.ratio:.3f}x -> {h.verdict(r.ratio <= 0.3)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,5,10", help="comma-separated N values (default %(default)s)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to idle before measuring")
    parser.add_argument("--no-smaps", action="store_true", help="skip the per-mapping breakdown of a worker")
    parser.add_argument("--gateway-venv", type=Path, default=Path("/work/scratch-hermes/gw-venv"),
                        help="venv with hermes-agent[messaging] installed (default %(default)s)")
    parser.add_argument("--time-limit", type=float, default=900,
                        help="stop (and clean up) after this many seconds (default %(default)s)")
    args = parser.parse_args()
    if not (args.gateway_venv / "bin" / "hermes").exists():
        parser.error(f"{args.gateway_venv}/bin/hermes not found: pip install 'hermes-agent[messaging]==0.19.0' there")
    counts = [int(x) for x in args.agents.split(",") if x.strip()]
    os.environ.update(hermes_home.ENVIRONMENT)  # inherited by hermesd, as the gateways get it
    h.guard(args.time_limit)

    tokens = [DAEMON_TOKEN, *(gateway_token(i) for i in range(max(counts)))]
    rows = []
    with FakeTelegram(tokens=tokens) as fake, FakeOpenAI() as llm:
        for n in counts:
            row = Row(n)
            measure_gateways(row, args.gateway_venv, fake, llm, args.settle)
            fake.reset()
            measure_hermesd(row, fake, llm, args.settle, smaps=not args.no_smaps and n == max(counts))
            fake.reset()
            rows.append(row)
            print(f"N={n}: done", file=sys.stderr, flush=True)
    report(rows)
    return 0


if __name__ == "__main__":
    h.run_script(main)
