"""etc/hermesd.service and its sysusers/tmpfiles snippets, checked with systemd's own tools.

systemd is not PID 1 here, so the unit cannot be started; `systemd-analyze` still loads
it as systemd would.  verify is pointed at a copy whose ExecStart=/ExecReload= name this
environment's hermesd and hermesctl (the packaged /usr/bin ones are not installed here,
which verify would rightly report), every other line as shipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import HERMESCTL, HERMESD, REPO

UNIT = REPO / "etc" / "hermesd.service"
LANDLOCK = {"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"}
EXPOSURE_THRESHOLD = 15  # systemd-analyze security's overall exposure x 10 (it reports 1.4)

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian package systemd)")


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> its values in order (a key may repeat, as SystemCallFilter= does)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def local_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "hermesd.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/hermesd ", f"{HERMESD} ")
                    .replace("/usr/bin/hermesctl ", f"{HERMESCTL} "))
    return copy


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_unit_declares_what_the_daemon_relies_on() -> None:
    settings = {key: values[-1] for key, values in unit_settings(UNIT.read_text()).items()}
    assert settings["Service.Type"] == "notify"
    assert settings["Service.ExecStart"] == "/usr/bin/hermesd --config /etc/hermesd/hermesd.toml"
    assert settings["Service.ExecReload"] == "/usr/bin/hermesctl --socket /run/hermesd/control.sock reload --wait"
    assert settings["Service.KillMode"] == "mixed"
    assert settings["Service.Restart"] == "on-failure"
    assert settings["Service.Delegate"] == "yes"
    assert settings.get("Service.ProtectControlGroups", "no") == "no"  # it would make the cgroup read-only
    for key in ("RuntimeDirectory", "StateDirectory", "ConfigurationDirectory", "User", "Group"):
        assert settings[f"Service.{key}"] == "hermesd"
    assert settings["Service.WatchdogSec"].endswith("s")
    assert settings["Service.TimeoutStopSec"] == "45s"  # over 3 x stop_timeout's default (10 s)


def test_unit_lets_workers_use_landlock() -> None:
    """@system-service lacks the Landlock calls (systemd 252): a worker confining itself
    would get EPERM instead of its sandbox."""
    filters = unit_settings(UNIT.read_text())["Service.SystemCallFilter"]
    allowed = {name for line in filters if not line.startswith("~") for name in line.split()}
    assert LANDLOCK <= allowed
    assert "@system-service" in allowed


@needs_systemd
def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", str(local_copy(tmp_path)), cwd=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd
def test_unit_exposure_stays_low(tmp_path: Path) -> None:
    """The score recorded in docs/SYSTEMD.md; a change that loosens the unit fails here."""
    result = analyze("security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}", "--no-pager",
                     str(local_copy(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_systemd
def test_sysusers_and_tmpfiles_make_the_user_and_a_config_dir_it_can_read(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles can give /etc/hermesd to the group only as root")
    (tmp_path / "etc").mkdir()
    for tool, snippet in (("systemd-sysusers", "hermesd.sysusers"), ("systemd-tmpfiles", "hermesd.tmpfiles")):
        extra = ["--create"] if tool == "systemd-tmpfiles" else []
        result = subprocess.run([tool, f"--root={tmp_path}", *extra, str(REPO / "etc" / snippet)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    user = next(line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
                if line.startswith("hermesd:"))
    assert user[5:] == ["/var/lib/hermesd", "/usr/sbin/nologin"]
    config_dir = (tmp_path / "etc/hermesd").stat()
    assert (oct(config_dir.st_mode & 0o7777), config_dir.st_uid, config_dir.st_gid) == ("0o750", 0, int(user[3]))
