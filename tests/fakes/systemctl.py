#!/usr/bin/env python3
"""A stand-in for `systemctl`, for machines where systemd is installed but is not PID 1
(test containers): it runs a unit the way systemd would run it, as far as hermesd's unit
needs.

    systemctl [enable [--now] | start | stop | restart | reload | is-active | status] UNIT
    systemctl daemon-reload            (accepted, does nothing)

From the unit's [Service] section it honours ExecStart, ExecReload, User, Group,
RuntimeDirectory, StateDirectory, ConfigurationDirectory (and their modes), Type=notify (start returns once
the service sent READY=1, fails if it exits first) and WatchdogSec (WATCHDOG_USEC is set).
Each started unit gets a small manager process that holds its NOTIFY_SOCKET, keeps the
last STATUS= it received, and stops the service on request with SIGTERM (then SIGKILL of
its whole session after TimeoutStopSec).  Everything else in the unit is ignored: this
proves what the unit starts and how, not its sandboxing.

State lives in $FAKE_SYSTEMD_STATE (default /run/fake-systemd); the service's output goes
to <state>/<unit>.log.  $FAKE_SYSTEMD_UNITS (colon-separated) replaces the unit directories.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SYSTEMD_STATE", "/run/fake-systemd"))
UNIT_DIRS = [Path(p) for p in os.environ.get(
    "FAKE_SYSTEMD_UNITS", "/etc/systemd/system:/usr/lib/systemd/system:/lib/systemd/system").split(":")]


def unit_file(name: str) -> Path:
    name = name if "." in name else f"{name}.service"
    for directory in UNIT_DIRS:
        if (directory / name).exists():
            return directory / name
    sys.exit(f"Unit {name} could not be found.")


def service_section(path: Path) -> dict[str, str]:
    """The [Service] keys (a repeated key keeps its last value; continuation lines joined)."""
    keys, section, text = {}, "", path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            keys[key.strip()] = value.strip()
    return keys


def seconds(value: str, default: float) -> float:
    value = value.strip()
    for suffix, factor in (("min", 60), ("ms", 0.001), ("s", 1)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value) if value else default


def state_file(unit: str) -> Path:
    return STATE / f"{unit}.json"


def read_state(unit: str) -> dict:
    try:
        return json.loads(state_file(unit).read_text())
    except (FileNotFoundError, ValueError):
        return {"active": "inactive"}


def write_state(unit: str, **fields: object) -> None:
    merged = {**read_state(unit), **fields}
    temporary = state_file(unit).with_suffix(".tmp")
    temporary.write_text(json.dumps(merged))
    temporary.replace(state_file(unit))


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def directories(service: dict[str, str], uid: int, gid: int) -> None:
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"),
                      ("ConfigurationDirectory", "/etc")):
        mode = int(service.get(f"{key}Mode", "0755"), 8)
        for name in service.get(key, "").split():
            path = Path(base) / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
            if key != "ConfigurationDirectory":  # systemd leaves /etc/<dir> to root
                os.chown(path, uid, gid)


def become(service: dict[str, str]) -> None:
    """In the child: the unit's user and group, as systemd sets them."""
    user = service.get("User")
    if not user:
        return
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(service["Group"]).gr_gid if service.get("Group") else entry.pw_gid
    os.setgroups(os.getgrouplist(user, gid))
    os.setgid(gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)


def manage(unit: str, service: dict[str, str]) -> None:
    """The manager process: run the service, listen to its notifications, stop it when
    asked (SIGTERM to us), and record what happens."""
    notify_path = STATE / f"{unit}.notify"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    os.chmod(notify_path, 0o777)
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "LANG": os.environ.get("LANG", "C.UTF-8"), "NOTIFY_SOCKET": str(notify_path)}
    if service.get("WatchdogSec"):
        environment["WATCHDOG_USEC"] = str(int(seconds(service["WatchdogSec"], 0) * 1e6))
    argv = shlex.split(service["ExecStart"].lstrip("@-:+!"))
    log = os.open(STATE / f"{unit}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.dup2(log, 1)
        os.dup2(log, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        become(service)
        os.environ.clear()
        os.environ.update(environment)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    write_state(unit, active="activating", main_pid=pid, status="", manager=os.getpid())
    stop_requested = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    notify.settimeout(0.1)
    stop_deadline = None
    while True:
        try:
            message = notify.recv(4096).decode(errors="replace")
            fields = dict(line.split("=", 1) for line in message.splitlines() if "=" in line)
            if fields.get("READY") == "1":
                write_state(unit, active="active")
            if "RELOADING" in fields:
                write_state(unit, active="reloading")
            if "STOPPING" in fields:
                write_state(unit, active="deactivating")
            if "STATUS" in fields:
                write_state(unit, status=fields["STATUS"])
        except (TimeoutError, InterruptedError, ValueError):
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            write_state(unit, active="inactive" if stop_requested and code == 0 else "failed",
                        exit_code=code, main_pid=None)
            break
        if stop_requested and stop_deadline is None:  # KillMode=mixed: TERM to the main process
            os.kill(pid, signal.SIGTERM)
            stop_deadline = time.monotonic() + seconds(service.get("TimeoutStopSec", ""), 90)
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            os.killpg(pid, signal.SIGKILL)  # then KILL to everything left in its session
    notify.close()
    notify_path.unlink(missing_ok=True)


def start(unit: str) -> int:
    if read_state(unit).get("active") == "active" and alive(read_state(unit).get("main_pid")):
        return 0
    service = service_section(unit_file(unit))
    user = service.get("User")
    entry = pwd.getpwnam(user) if user else None
    directories(service, entry.pw_uid if entry else 0, entry.pw_gid if entry else 0)
    STATE.mkdir(parents=True, exist_ok=True)
    write_state(unit, active="activating", main_pid=None, exit_code=None)
    manager = os.fork()
    if manager == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let whoever ran us see our end of output
            os.dup2(devnull, fd)
        try:
            manage(unit, service)
        finally:
            os._exit(0)
    deadline = time.monotonic() + seconds(service.get("TimeoutStartSec", ""), 90)
    while time.monotonic() < deadline:
        state = read_state(unit)
        if state["active"] == "active":
            return 0
        if state["active"] in ("failed", "inactive"):
            break
        time.sleep(0.05)
    print(f"Job for {unit} failed. See {STATE / (unit + '.log')}.", file=sys.stderr)
    return 1


def stop(unit: str) -> int:
    state = read_state(unit)
    manager = state.get("manager")
    if not alive(manager):
        return 0
    os.kill(manager, signal.SIGTERM)
    while alive(manager):
        time.sleep(0.05)
    return 0


def reload(unit: str) -> int:
    service = service_section(unit_file(unit))
    state = read_state(unit)
    if "ExecReload" not in service or not alive(state.get("main_pid")):
        print(f"{unit} is not active, cannot reload.", file=sys.stderr)
        return 1
    pid = os.fork()
    if pid == 0:
        become(service)
        os.environ["MAINPID"] = str(state["main_pid"])
        argv = shlex.split(service["ExecReload"].lstrip("@-:+!"))
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        sys.exit("usage: systemctl COMMAND [UNIT]")
    command, units = args[0], [u if "." in u else f"{u}.service" for u in args[1:]]
    if command == "daemon-reload":
        return 0
    code = 0
    for unit in units:
        if command == "enable":
            code |= start(unit) if "--now" in argv else 0
        elif command == "start":
            code |= start(unit)
        elif command == "stop":
            code |= stop(unit)
        elif command == "restart":
            code |= stop(unit) or start(unit)
        elif command in ("reload", "reload-or-restart"):
            code |= reload(unit)
        elif command in ("is-active", "status"):
            state = read_state(unit)
            active = state["active"] if alive(state.get("main_pid")) or state["active"] == "failed" \
                else "inactive"
            print(active if command == "is-active" else
                  f"{unit}\n     Active: {active}\n   Main PID: {state.get('main_pid')}\n"
                  f"     Status: \"{state.get('status', '')}\"")
            code |= 0 if active == "active" else 3
        else:
            sys.exit(f"systemctl (test stand-in): unknown command {command}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
