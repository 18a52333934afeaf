"""The control and local sockets refuse agent workers and whatever they start, told apart
by session id: a worker calls setsid(), so its session id is its pid.  (The workers a
real daemon runs cannot be made to connect until a runtime can run arbitrary code; here
a process that calls setsid() stands in for one.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from hermesd import unixsock

CONNECT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)"
VIA_CHILD = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CONNECT!r}, sys.argv[1]])"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def refusal(path: Path, program: str, workers: Callable[[int], set[int]]) -> str | None:
    """Start `program` in a new session (as a worker is), let it connect to `path`, and
    judge the connection with `workers(its pid)` as the live workers' pids."""
    listener = await anyio.create_unix_listener(path)
    process = subprocess.Popen([sys.executable, "-c", program, str(path)], start_new_session=True)
    try:
        with anyio.fail_after(10):
            stream = await listener.accept()
        async with stream:
            return unixsock.peer_refusal(stream, workers(process.pid))
    finally:
        await listener.aclose()
        process.wait(timeout=10)


@pytest.mark.anyio
async def test_a_worker_is_refused(tmp_path: Path) -> None:
    reason = await refusal(tmp_path / "s", CONNECT, lambda pid: {pid})
    assert reason == "connections from agent workers are not accepted"


@pytest.mark.anyio
async def test_a_process_a_worker_started_is_refused(tmp_path: Path) -> None:
    reason = await refusal(tmp_path / "s", VIA_CHILD, lambda pid: {pid})
    assert reason == "connections from agent workers are not accepted"


@pytest.mark.anyio
async def test_the_same_user_outside_any_worker_is_accepted(tmp_path: Path) -> None:
    assert await refusal(tmp_path / "s", VIA_CHILD, lambda pid: {pid + 1_000_000}) is None
