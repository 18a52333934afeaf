"""The control and local sockets refuse agent workers and whatever they start: any
descendant of the daemon (here, of the test process, which stands in for it).  The real
daemon's case, with a worker's process hiding in a new session, is in
tests/integration/test_isolation.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from hermesd import unixsock

CONNECT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)"
VIA_CHILD = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CONNECT!r}, sys.argv[1]])"
ORPHANED = ("import os, subprocess, sys, time\n"  # a grandchild whose parent exits: adopted by init
            "parent = os.getpid()\n"
            "if os.fork(): os._exit(0)\n"
            "while os.getppid() == parent: time.sleep(0.01)\n"
            f"subprocess.run([sys.executable, '-c', {CONNECT!r}, sys.argv[1]])")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def refusal(path: Path, program: str) -> str | None:
    """Start `program` in a new session (as a worker is), let it connect to `path`, and
    judge the connection."""
    listener = await anyio.create_unix_listener(path)
    process = subprocess.Popen([sys.executable, "-c", program, str(path)], start_new_session=True)
    try:
        with anyio.fail_after(10):
            stream = await listener.accept()
        async with stream:
            return unixsock.peer_refusal(stream)
    finally:
        await listener.aclose()
        process.wait(timeout=10)


@pytest.mark.anyio
async def test_a_worker_is_refused(tmp_path: Path) -> None:
    reason = await refusal(tmp_path / "s", CONNECT)
    assert reason == "connections from agent workers are not accepted"


@pytest.mark.anyio
async def test_a_process_a_worker_started_is_refused(tmp_path: Path) -> None:
    reason = await refusal(tmp_path / "s", VIA_CHILD)
    assert reason == "connections from agent workers are not accepted"


@pytest.mark.anyio
async def test_the_same_user_outside_any_worker_is_accepted(tmp_path: Path) -> None:
    assert await refusal(tmp_path / "s", ORPHANED) is None
