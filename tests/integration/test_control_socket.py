"""The control socket holds up against clients that misbehave: an oversized request is
refused before it is read, a client that goes quiet mid-request is disconnected, and a
process an agent started is refused however it hides."""

from __future__ import annotations

import socket
import struct

from hermesd import protocol
from tests.harness import TWO_AGENTS, Daemon

REPLY = protocol.Codec(protocol.ControlReply, json=True)


def connect(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(daemon.socket))
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_oversized_request_is_refused_and_the_daemon_carries_on(daemon: Daemon) -> None:
    daemon.write_config(TWO_AGENTS)
    daemon.start()
    with connect(daemon) as sock:
        sock.sendall(struct.pack(">I", 10 * 1024 * 1024) + b"{")
        answer = read_all(sock)
    reply = REPLY.decode(answer[4:])
    assert not reply.ok and "exceeds" in reply.error
    assert daemon.status() is not None


def test_client_silent_mid_request_is_disconnected(daemon: Daemon) -> None:
    daemon.write_config(TWO_AGENTS)
    daemon.start()
    with connect(daemon) as sock:
        sock.sendall(struct.pack(">I", 40) + b'{"type":')  # and then nothing more
        assert read_all(sock) == b""  # closed by the daemon, not by us
    assert "control_timeout" in daemon.log()
    assert daemon.status() is not None


def test_a_process_an_agent_hid_in_a_new_session_is_refused(daemon: Daemon) -> None:
    """It left the worker's session and was orphaned (setsid, double fork): the daemon, a
    child subreaper, adopted it, so it still descends from the daemon."""
    daemon.write_config('[agents.a]\nruntime = "python:tests.fakes.probe_runtime:make"\n')
    daemon.start()
    answer = daemon.send("local:probe", f"escape {daemon.socket}", "--agent", "a")
    assert "connections from agent workers are not accepted" in answer
