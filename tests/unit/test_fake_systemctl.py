"""The systemctl stand-in (tests/fakes/systemctl.py) runs a notify unit as systemd would:
start returns once READY=1 came, status shows the last STATUS=, reload runs ExecReload,
stop sends SIGTERM and waits.  Driven here with the real hermesd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import HERMESCTL, HERMESD, Daemon

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "systemctl.py"


def systemctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FAKE), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_notify_unit_starts_reloads_and_stops(daemon: Daemon, tmp_path: Path) -> None:
    daemon.write_config('[agents.a]\nruntime = "echo"\n')
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "hd.service").write_text(
        "[Service]\nType=notify\n"
        f"ExecStart={HERMESD} --config {daemon.config_path}\n"
        f"ExecReload={HERMESCTL} --socket {daemon.socket} reload --wait\n")
    env = {**os.environ, "FAKE_SYSTEMD_UNITS": str(tmp_path / "units"),
           "FAKE_SYSTEMD_STATE": str(tmp_path / "state")}

    try:
        assert systemctl(env, "start", "hd").returncode == 0  # returns once READY=1 came
        status = systemctl(env, "status", "hd")
        assert "Active: active" in status.stdout and "Status: \"1 running" in status.stdout
        assert daemon.status() is not None

        assert systemctl(env, "reload", "hd").returncode == 0
        assert "reload_done" in (tmp_path / "state" / "hd.service.log").read_text()
    finally:  # the daemon is the stand-in's child, not the fixture's: stop it here
        assert systemctl(env, "stop", "hd").returncode == 0
    assert systemctl(env, "is-active", "hd").stdout.strip() == "inactive"
    assert "daemon_stopped code=0" in (tmp_path / "state" / "hd.service.log").read_text()
