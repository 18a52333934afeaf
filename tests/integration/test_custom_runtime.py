"""`runtime = "python:<module>:<factory>"`: the worker imports the operator's runtime, and
says in `hermesctl status` why it could not."""

from __future__ import annotations

import pytest

from tests.harness import TWO_AGENTS, Daemon, wait_for


def test_custom_runtime_answers(daemon: Daemon) -> None:
    daemon.write_config(TWO_AGENTS + '[agents.own]\nruntime = "python:tests.fakes.hostile_runtime:make"\n')
    daemon.start()
    assert daemon.send("local:me", "hello", "--agent", "own") == "own: hello\n"


@pytest.mark.parametrize("runtime, error", [
    ("python:tests.fakes.no_such_module:make",
     "cannot import tests.fakes.no_such_module: ModuleNotFoundError"),
    ("python:tests.fakes.hostile_runtime:no_such_factory",
     "module tests.fakes.hostile_runtime has no callable no_such_factory"),
])  # fmt: skip
def test_unloadable_custom_runtime_is_shown_in_status(daemon: Daemon, runtime: str, error: str) -> None:
    daemon.write_config(TWO_AGENTS + f'[agents.own]\nruntime = "{runtime}"\n')
    daemon.start(wait=False)
    wait_for(lambda: (daemon.status() or {}).get("agents") and daemon.agents()["own"]["last_error"],
             what="own agent's setup error")
    last_error = daemon.agents()["own"]["last_error"]
    assert last_error.startswith("worker exit status 1: worker_setup_failed")
    assert f"runtime '{runtime}': {error}" in last_error
    assert daemon.ctl("status").stdout.count(error) == 1
    assert daemon.send("local:me", "hi", "--agent", "home") == "home: hi\n"
