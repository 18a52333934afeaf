"""A worker that attacks its parent (tests/fakes/hostile_runtime.py) is killed and
restarted; the daemon and the other agents carry on, and the message is not lost."""

from __future__ import annotations

import pytest

from hermesd.supervisor import MAX_REPLIES_PER_MESSAGE
from tests.harness import Daemon, wait_for

AGENTS = """
[agents.home]
runtime = "echo"
[agents.hostile]
runtime = "python:tests.fakes.hostile_runtime:make"
"""

RECOVERED = "hostile: {attack}\n"  # the restarted worker answers the redelivered message
FIRST_REPLIES = "".join(f"flood {i}\n" for i in range(MAX_REPLIES_PER_MESSAGE))


@pytest.mark.parametrize("attack, fault, answer", [
    ("oversized", "protocol error: frame of 4294967280 bytes exceeds", RECOVERED),
    ("garbage", "protocol error: undecodable frame", RECOVERED),
    ("wrong-type", "protocol error: undecodable frame", RECOVERED),
    ("impostor", "protocol error: hello from someone-else", RECOVERED),
    ("overflow", "protocol error: undecodable frame", RECOVERED),
    ("flood", f"reply flood: more than {MAX_REPLIES_PER_MESSAGE} replies", FIRST_REPLIES),
    ("huge", "reply too long: 200000 characters", RECOVERED),
])  # fmt: skip
def test_hostile_worker_is_replaced_while_other_agents_answer(
    daemon: Daemon, attack: str, fault: str, answer: str
) -> None:
    daemon.write_config(AGENTS)
    daemon.start()
    before = daemon.agents()
    chat = daemon.ctl_popen("send", "local:attack", attack, "--agent", "hostile")
    assert daemon.send("local:me", "still here?", "--agent", "home") == "home: still here?\n"
    wait_for(lambda: daemon.agent_running("hostile", other_than=before["hostile"]["pid"]),
             what="hostile worker replaced")
    output, errors = chat.communicate(timeout=30)
    assert (chat.returncode, output) == (0, answer.format(attack=attack)), errors
    hostile = daemon.agents()["hostile"]
    assert hostile["restarts"] == 1 and hostile["last_error"].startswith(fault)
    assert daemon.agents()["home"]["pid"] == before["home"]["pid"]
    assert daemon.process is not None and daemon.process.poll() is None
    assert f"reason={fault.split(':')[0]}" in daemon.log().replace('"', "")
