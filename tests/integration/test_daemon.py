"""The daemon end to end: start, answer, stop, refuse what it must refuse."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

from hermesd import protocol
from tests.harness import HERMESD, Daemon, exists, wait_for
from tests.harness import TWO_AGENTS as AGENTS


def test_agents_answer_through_the_local_platform(daemon: Daemon) -> None:
    daemon.write_config(AGENTS, daemon='default_agent = "home"\n')
    daemon.start()
    assert daemon.send("local:me", "hello") == "home: hello\n"
    assert daemon.send("local:me", "hi coder", "--agent", "coder") == "coder: hi coder\n"


def test_status_shows_every_agent_with_pid_memory_and_queue(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    agents = daemon.agents()
    assert set(agents) == {"home", "coder"}
    for info in agents.values():
        assert info["state"] == "running"
        assert exists(info["pid"])
        assert info["rss"] > info["uss"] > 0
        assert info["queue"] == 0 and info["restarts"] == 0 and info["last_error"] == ""
    table = daemon.ctl("status").stdout
    assert "AGENT" in table and "coder" in table and "running" in table


def test_worker_processes_are_titled_by_agent(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    pid = daemon.agents()["coder"]["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert cmdline.read().split(b"\0")[0] == b"hermesd: agent coder"


def test_sigterm_leaves_no_process_behind(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    processes = [p.pid for p in daemon.children()]
    assert len(processes) == 3  # zygote + two workers
    assert daemon.stop() == 0
    wait_for(lambda: not any(exists(pid) for pid in processes), what="workers and zygote gone")
    assert "daemon_stopped" in daemon.log()
    assert not daemon.socket.exists() or daemon.ctl("status").returncode == 3


def test_second_daemon_on_same_runtime_dir_is_refused(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    second = subprocess.run([HERMESD, "--config", str(daemon.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"in use by another hermesd (pid {daemon.pid})" in second.stderr
    assert daemon.send("local:me", "still here", "--agent", "home") == "home: still here\n"


def test_bad_config_on_start_names_line_and_key(daemon: Daemon) -> None:
    daemon.write_config(AGENTS + '[agents.broken]\nruntime = "ecko"\n')
    result = subprocess.run([HERMESD, "--config", str(daemon.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    line = daemon.config_path.read_text().splitlines().index('runtime = "ecko"') + 1
    assert f"{daemon.config_path}:{line}: agents.broken.runtime:" in result.stderr
    assert not daemon.runtime_dir.exists() or not (daemon.runtime_dir / "control.sock").exists()


def test_check_config_exit_codes(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    good = subprocess.run([HERMESD, "--check-config", str(daemon.config_path)],
                          capture_output=True, text=True)
    assert good.returncode == 0 and "ok" in good.stdout
    daemon.config_path.write_text(daemon.config_path.read_text() + "[[routes]]\nmatch = 'local:x'\nagent = 'ghost'\n")
    bad = subprocess.run([HERMESD, "--check-config", str(daemon.config_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "routes" in bad.stderr and "ghost" in bad.stderr


def test_hermesctl_exit_codes(daemon: Daemon) -> None:
    daemon.write_config(AGENTS)
    assert daemon.ctl("status").returncode == 3  # not started yet: unreachable
    daemon.start()
    assert daemon.ctl("restart", "ghost").returncode == 1
    assert daemon.ctl("frobnicate").returncode == 2
    assert json.loads(daemon.ctl("--json", "agents").stdout)[0]["runtime"] == "echo"


def test_sigint_stops_without_waiting_and_the_turn_resumes_after_restart(daemon: Daemon) -> None:
    """Ctrl-C is the quick stop: the running turn is cut off (SIGTERM would let it finish),
    and the next start runs it again."""
    daemon.write_config('[agents.slow]\nruntime = "echo"\necho_delay = 3.0\n')
    daemon.start()
    workers = [p.pid for p in daemon.children()]
    sender = daemon.ctl_popen("send", "local:quick", "cut short", "--agent", "slow")
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 1, what="turn running")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=15) == 0
    assert sender.wait(timeout=15) == 3  # no answer: the daemon went away under it
    wait_for(lambda: not any(exists(pid) for pid in workers), what="workers gone")
    assert "stop_forced signal=SIGINT" in daemon.log()

    daemon.start()
    chat = daemon.ctl("chat", "slow", "--session", "quick", "--timeout", "20")
    assert chat.stdout.splitlines() == ["slow: cut short"], chat.stderr


def test_zygote_death_stops_the_daemon_with_failure(daemon: Daemon) -> None:
    """Without a zygote no worker can be replaced: hermesd exits 1 so that the service
    manager restarts it whole (messages are in the spool, nothing is lost)."""
    daemon.write_config(AGENTS)
    daemon.start()
    zygote = next(p for p in daemon.children() if p.cmdline()[0] == "hermesd: zygote")
    workers = [info["pid"] for info in daemon.agents().values()]
    zygote.kill()
    assert daemon.process is not None and daemon.process.wait(timeout=30) == 1
    assert "zygote_died" in daemon.log()
    wait_for(lambda: not any(exists(pid) for pid in workers), what="workers gone")


def test_control_socket_refuses_other_users(daemon: Daemon) -> None:
    """Even with the socket file and its directory opened up to everyone, SO_PEERCRED keeps
    strangers out."""
    daemon.write_config(AGENTS)
    daemon.start()
    for directory in (daemon.root, daemon.runtime_dir):
        os.chmod(directory, 0o755)
    os.chmod(daemon.socket, 0o666)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # become 'nobody' and try to ask for status
        os.close(reader)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.socket))
            sock.sendall(protocol.Codec(protocol.ControlRequest, json=True).encode(protocol.StatusRequest()))
            os.write(writer, sock.recv(65536))
        finally:
            os._exit(0)
    os.close(writer)
    answer = os.read(reader, 65536)
    os.waitpid(child, 0)
    reply = protocol.Codec(protocol.ControlReply, json=True).decode(answer[4:])
    assert not reply.ok and "permission denied" in reply.error and "uid 65534" in reply.error
    assert "control_refused" in daemon.log()


def test_message_sent_the_moment_the_socket_appears_is_answered(daemon: Daemon) -> None:
    daemon.write_config(AGENTS, daemon='default_agent = "home"\n')
    daemon.start(wait=False)
    result = wait_for(lambda: (r := daemon.ctl("send", "local:early", "first!")).returncode != 3 and r,
                      what="local socket accepting")
    assert (result.returncode, result.stdout) == (0, "home: first!\n"), result.stderr


def test_a_client_that_stops_reading_does_not_stall_other_conversations(daemon: Daemon) -> None:
    daemon.write_config(AGENTS, daemon='default_agent = "home"\n')
    daemon.start()
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(str(daemon.runtime_dir / "local.sock"))
    codec = protocol.Codec(protocol.LocalFrame, json=True)
    text = "x" * 2000
    frames = b"".join(codec.encode(protocol.LocalSend(session_key="local:stuck", text=text,
                                                       client_id=f"s{i}")) for i in range(400))
    try:
        stuck.sendall(frames)  # ~800 kB of replies will come back; it never reads them
    except BrokenPipeError:
        pass  # the daemon already gave up on it: that is the point
    wait_for(lambda: daemon.agents()["home"]["queue"] == 0, what="stuck client's turns done")
    assert daemon.send("local:other", "anyone?") == "home: anyone?\n"
    stuck.close()
