"""Nothing is lost and nothing is answered twice, whoever crashes when."""

from __future__ import annotations

import os
import signal

from tests.harness import Daemon, exists, wait_for

SLOW = """
[agents.slow]
runtime = "echo"
echo_delay = 1.0
[agents.home]
runtime = "echo"
"""


def test_worker_killed_mid_turn_still_answers_once(daemon: Daemon) -> None:
    daemon.write_config(SLOW)
    daemon.start()
    victim = daemon.agents()["slow"]["pid"]
    sender = daemon.ctl_popen("send", "local:mid", "are you there", "--agent", "slow")
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 1, what="message in flight")
    os.kill(victim, signal.SIGKILL)
    out, err = sender.communicate(timeout=30)
    assert sender.returncode == 0, err
    assert out == "slow: are you there\n"  # answered, and exactly once
    assert daemon.agents()["slow"]["restarts"] == 1


def test_parent_killed_with_messages_pending_answers_after_restart(daemon: Daemon) -> None:
    daemon.write_config(SLOW)
    daemon.start()
    workers = [p.pid for p in daemon.children()]
    senders = []
    for i in range(3):  # one after the other, so their order is known
        senders.append(daemon.ctl_popen("send", "local:crash", f"message {i}", "--agent", "slow"))
        wait_for(lambda n=i + 1: daemon.agents()["slow"]["queue"] == n, what=f"message {i} queued")
    daemon.kill()
    for sender in senders:
        sender.communicate(timeout=30)
        assert sender.returncode == 3  # the daemon went away under it
    # the zygote and the workers die with the daemon (PDEATHSIG)
    wait_for(lambda: not any(exists(pid) for pid in workers), what="orphans gone")

    daemon.start()
    chat = daemon.ctl("chat", "slow", "--session", "crash", "--timeout", "20")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.splitlines() == [f"slow: message {i}" for i in range(3)]
    # acked now: a later reconnect gets nothing again
    again = daemon.ctl("chat", "slow", "--session", "crash", "--timeout", "5")
    assert again.returncode == 0 and again.stdout == ""


def test_replies_wait_for_a_reader(daemon: Daemon) -> None:
    """A reply produced while nobody is attached is kept, not dropped."""
    daemon.write_config(SLOW)
    daemon.start()
    sender = daemon.ctl_popen("send", "local:gone", "later", "--agent", "slow", "--timeout", "0.3")
    _out, err = sender.communicate(timeout=30)
    assert sender.returncode == 1 and "stay queued" in err
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 0, what="turn finished")
    chat = daemon.ctl("chat", "slow", "--session", "gone", "--timeout", "10")
    assert chat.stdout == "slow: later\n"


def test_messages_of_one_session_arrive_in_order(daemon: Daemon) -> None:
    daemon.write_config('[agents.home]\nruntime = "echo"\n')
    daemon.start()
    lines = [f"line {i}" for i in range(60)]
    chat = daemon.ctl("chat", "home", input="\n".join(lines) + "\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.splitlines() == [f"home: {line}" for line in lines]


def test_sessions_run_concurrently_in_one_agent(daemon: Daemon) -> None:
    """Two slow sessions finish in about one turn's time, not two: observed as both being
    in flight at once, not by timing."""
    daemon.write_config(SLOW)
    daemon.start()
    senders = [daemon.ctl_popen("send", f"local:c{i}", "hi", "--agent", "slow") for i in range(2)]
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 2, what="both in flight")
    for sender in senders:
        assert sender.communicate(timeout=30)[0] == "slow: hi\n"


def test_sigterm_lets_running_turns_finish(daemon: Daemon) -> None:
    daemon.write_config(SLOW)
    daemon.start()
    sender = daemon.ctl_popen("send", "local:drain", "finish me", "--agent", "slow")
    wait_for(lambda: daemon.agents()["slow"]["queue"] == 1, what="turn in progress")
    assert daemon.stop() == 0
    out, err = sender.communicate(timeout=30)
    assert (sender.returncode, out) == (0, "slow: finish me\n"), err
