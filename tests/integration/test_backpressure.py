"""A stuck agent fills its own queue, not the daemon: past `max_queue` senders are told
at once, and every other agent answers as usual."""

from __future__ import annotations

from tests.harness import Daemon, wait_for

STUCK = """
[agents.stuck]
runtime = "echo"
echo_delay = 2.0
max_queue = 3
[agents.free]
runtime = "echo"
"""


def test_full_queue_answers_busy_and_others_still_answer(daemon: Daemon) -> None:
    daemon.write_config(STUCK)
    daemon.start()
    waiting = [daemon.ctl_popen("send", f"local:s{i}", f"job {i}", "--agent", "stuck") for i in range(3)]
    wait_for(lambda: daemon.agents()["stuck"]["queue"] == 3, what="queue full")

    busy = daemon.send("local:late", "one more", "--agent", "stuck")
    assert busy.startswith("stuck is busy (3 messages waiting"), busy
    again = daemon.ctl("send", "local:late", "and another", "--agent", "stuck")
    assert again.returncode == 1 and "stuck is busy" in again.stderr  # told once per conversation
    assert daemon.send("local:f", "hello", "--agent", "free") == "free: hello\n"
    stuck = daemon.agents()["stuck"]
    assert (stuck["queue"], stuck["refused"]) == (3, 2)
    assert "message_refused" in daemon.log()

    for i, sender in enumerate(waiting):  # the queued ones are answered, none was dropped
        assert sender.communicate(timeout=30)[0] == f"stuck: job {i}\n"
    assert daemon.send("local:late", "again", "--agent", "stuck") == "stuck: again\n"


def test_messages_for_a_stopped_agent_wait_within_the_limit(daemon: Daemon) -> None:
    daemon.write_config(STUCK)
    daemon.start()
    assert daemon.ctl("stop", "stuck").returncode == 0
    waiting = [daemon.ctl_popen("send", f"local:w{i}", f"m{i}", "--agent", "stuck") for i in range(3)]
    wait_for(lambda: daemon.agents()["stuck"]["queue"] == 3, what="three held")
    assert "agent stopped" in daemon.send("local:w9", "too many", "--agent", "stuck")
    assert daemon.ctl("start", "stuck").returncode == 0
    assert [s.communicate(timeout=30)[0] for s in waiting] == [f"stuck: m{i}\n" for i in range(3)]
