"""Reload applies a new configuration by difference, and refuses a broken one."""

from __future__ import annotations

import os
import signal

from tests.harness import Daemon, wait_for

THREE = """
[agents.keep]
runtime = "echo"
[agents.change]
runtime = "echo"
[agents.drop]
runtime = "echo"
"""


def test_reload_restarts_only_what_changed(daemon: Daemon) -> None:
    daemon.write_config(THREE)
    daemon.start()
    before = daemon.agents()
    daemon.write_config(THREE.replace('[agents.drop]\nruntime = "echo"\n', "")
                        .replace('[agents.change]\nruntime = "echo"\n',
                                 '[agents.change]\nruntime = "echo"\necho_delay = 0.01\n')
                        + '[agents.new]\nruntime = "echo"\n')
    result = daemon.ctl("reload", "--wait")
    assert result.returncode == 0, result.stderr
    assert "added: new" in result.stdout and "removed: drop" in result.stdout
    assert "changed: change" in result.stdout
    after = daemon.agents()
    assert set(after) == {"keep", "change", "new"}
    assert after["keep"]["pid"] == before["keep"]["pid"]
    assert after["change"]["pid"] != before["change"]["pid"]
    assert all(info["state"] == "running" for info in after.values())
    wait_for(lambda: not os.path.exists(f"/proc/{before['drop']['pid']}"), what="dropped agent gone")
    assert daemon.send("local:x", "hi", "--agent", "new") == "new: hi\n"


def test_invalid_reload_is_rejected_and_old_config_keeps_running(daemon: Daemon) -> None:
    daemon.write_config(THREE)
    daemon.start()
    before = daemon.agents()
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good + "[agents.bad]\nruntime = 42\n")
    result = daemon.ctl("reload", "--wait")
    assert result.returncode == 1
    line = len(good.splitlines()) + 2
    assert f"{daemon.config_path}:{line}: agents.bad.runtime" in result.stderr
    assert {a: i["pid"] for a, i in daemon.agents().items()} == {a: i["pid"] for a, i in before.items()}
    assert daemon.send("local:x", "still", "--agent", "keep") == "keep: still\n"
    assert "reload_rejected" in daemon.log()


def test_sighup_reloads(daemon: Daemon) -> None:
    daemon.write_config(THREE)
    daemon.start()
    daemon.write_config(THREE + '[agents.late]\nruntime = "echo"\n')
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.agent_running("late"), what="agent added by SIGHUP running")


def test_reload_with_no_change_touches_nothing(daemon: Daemon) -> None:
    daemon.write_config(THREE)
    daemon.start()
    before = daemon.agents()
    result = daemon.ctl("reload", "--wait")
    assert result.returncode == 0 and "no agent changed" in result.stdout
    assert {a: i["pid"] for a, i in daemon.agents().items()} == {a: i["pid"] for a, i in before.items()}


def test_messages_for_a_removed_agent_follow_the_new_routes(daemon: Daemon) -> None:
    daemon.write_config("""
        [agents.old]
        runtime = "echo"
        echo_delay = 5.0
        [agents.fallback]
        runtime = "echo"
        """, extra='[[routes]]\nmatch = "local:topic"\nagent = "old"\n',
        daemon='default_agent = "fallback"\n')
    daemon.start()
    sender = daemon.ctl_popen("send", "local:topic", "who answers")
    wait_for(lambda: daemon.agents()["old"]["queue"] == 1, what="message with old agent")
    daemon.write_config('[agents.fallback]\nruntime = "echo"\n', daemon='default_agent = "fallback"\n')
    # old takes up to stop_timeout (3 s) to give up its turn, then the message moves on
    assert daemon.ctl("reload").returncode == 0
    out, err = sender.communicate(timeout=30)
    assert sender.returncode == 0, err
    assert out == "fallback: who answers\n"
    assert "did not stop within 3.0s" in daemon.log()
