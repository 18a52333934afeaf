"""The real daemon as a subprocess, driven the way a user drives it: hermesctl and sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
HERMESD = str(BIN / "hermesd")
HERMESCTL = str(BIN / "hermesctl")

TWO_AGENTS = """
[agents.home]
runtime = "echo"
[agents.coder]
runtime = "echo"
"""

def three_agents(a_delay: float = 0.0, a_llm: str | None = None) -> str:
    """Agents a, b and c, as the platform tests route to them: echo agents, `a` maybe slow,
    or `a` an openai agent of the model server at `a_llm` (model "m")."""
    if a_llm is None:
        first = f'[agents.a]\nruntime = "echo"\necho_delay = {a_delay}\n'
    else:
        first = f'[agents.a]\nruntime = "openai"\nllm = {{ base_url = "{a_llm}", model = "m" }}\n'
    return first + '[agents.b]\nruntime = "echo"\n[agents.c]\nruntime = "echo"\n'


FAST_SUPERVISOR = """
heartbeat_interval = 0.2
heartbeat_timeout = 3.0
backoff_initial = 0.05
backoff_max = 0.2
backoff_reset_after = 5.0
fatal_failures = 4
fatal_window = 30.0
stop_timeout = 3.0
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Daemon:
    """One hermesd under test: its files, its process, and hermesctl pointed at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.runtime_dir = root / "run"
        self.config_path = root / "hermesd.toml"
        self.log_path = root / "hermesd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.command_prefix: list[str] = []  # a wrapper that execs hermesd (e.g. into a cgroup)

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    def write_config(
        self, agents: str, extra: str = "", daemon: str = "", supervisor: str = FAST_SUPERVISOR
    ) -> None:
        self.config_path.write_text(
            f'[daemon]\nstate_dir = "{self.state_dir}"\nruntime_dir = "{self.runtime_dir}"\n'
            + textwrap.dedent(daemon) + supervisor + textwrap.dedent(agents)
            + textwrap.dedent(extra)
        )

    def start(self, wait: bool = True, env: Mapping[str, str] | None = None) -> None:
        """Start hermesd; `env` adds variables to its environment (e.g. NOTIFY_SOCKET,
        which conftest removes from the tests' own)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.command_prefix, HERMESD, "--config", str(self.config_path)], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, env={**_daemon_env(), **(env or {})},
        )  # fmt: skip
        log.close()
        if wait:
            wait_for(self.all_running, what="every agent running")

    def ctl(self, *args: str, timeout: float = 30.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HERMESCTL, "--socket", str(self.socket), *args], capture_output=True, text=True,
            timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip

    def ctl_popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [HERMESCTL, "--socket", str(self.socket), *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def status(self) -> dict[str, Any] | None:
        result = self.ctl("--json", "status")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def agents(self) -> dict[str, dict[str, Any]]:
        status = self.status()
        assert status is not None, "daemon not answering status"
        return {agent["agent"]: agent for agent in status["agents"]}

    def all_running(self) -> bool:
        status = self.status()
        return bool(status) and all(a["state"] == "running" for a in status["agents"])

    def agent_running(self, agent: str, other_than: int | None = None) -> bool:
        info = self.agents().get(agent)
        return bool(info) and info["state"] == "running" and info["pid"] != other_than

    def send(self, key: str, text: str, *extra: str) -> str:
        result = self.ctl("send", key, text, *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def zygote_pid(self) -> int:
        """The one child of the daemon that is not an agent's worker."""
        workers = {agent["pid"] for agent in self.agents().values()}
        (pid,) = [p.pid for p in self.children() if p.pid not in workers]
        return pid

    def kill(self) -> None:
        """kill -9 of the daemon alone (its zygote and workers follow by PDEATHSIG)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _daemon_env() -> dict[str, str]:
    """The repository root first on PYTHONPATH, so workers can import the test runtimes in
    tests/fakes/ (`runtime = "python:tests.fakes...."`), also where PYTHONPATH is unset."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def live(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def exists(pid: int) -> bool:
    return psutil.pid_exists(pid)
