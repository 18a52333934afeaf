"""`hermesd`: check the configuration, claim the runtime directory, start the zygote, run.

The order is the point of this module: the zygote is started once the lock is held (so a
refused second daemon starts nothing) and before the event loop and the platform
libraries (which the daemon alone needs, hence the late imports below).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from hermesd import __version__, config, log

EXIT_OK = 0
EXIT_FAILURE = 1  # bad configuration, runtime dir taken, or a fatal runtime error
EXIT_USAGE = 2


class RuntimeDirTaken(Exception):
    pass


class CannotDropPrivileges(Exception):
    pass


def check_user(cfg: config.Config) -> None:
    """Only root can make workers another user: an unprivileged daemon asked to would
    otherwise start workers that all fail."""
    run_as, uid = cfg.run_as, os.geteuid()
    if run_as is not None and uid != 0 and uid != run_as.uid:
        raise CannotDropPrivileges(
            f'[daemon] user = "{run_as.user}" needs hermesd to be started as root '
            f"(it runs as uid {uid}); remove the key or start it as root")


def share_state_dir(cfg: config.Config) -> None:
    """Let workers of `[daemon] user` reach their workspaces: the state directory and its
    agents/ become group-owned by the user's group, mode 0750 (the daemon's own files in
    it, such as spool.db, stay root's and private).  Called at start and on reload."""
    run_as = cfg.run_as
    if run_as is None or os.geteuid() != 0:
        return
    state_dir = Path(cfg.daemon.state_dir)
    for directory in (state_dir, state_dir / "agents"):
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chown(directory, -1, run_as.gid)
        os.chmod(directory, 0o750)


def claim_runtime_dir(runtime_dir: Path) -> int:
    """Lock `<runtime_dir>/hermesd.pid` for the daemon's lifetime; returns the descriptor.

    flock is released by the kernel when the daemon dies, however it dies, so a stale pid
    file never blocks a restart; the pid inside is for humans and for the error message.
    """
    runtime_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = runtime_dir / "hermesd.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RuntimeDirTaken(f"{runtime_dir} is in use by another hermesd (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hermesd", description="Host many chat agents behind one set of platform connections."
    )
    parser.add_argument("--config", metavar="FILE",
                        help=f"configuration file (default: {config.DEFAULT_CONFIG_PATH} if it "
                             "exists, else a built-in local-only echo setup)")
    parser.add_argument("--check-config", metavar="FILE",
                        help="validate FILE, print the first error with its line, exit 0 or 1")
    parser.add_argument("--version", action="version", version=f"hermesd {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.check_config:
        try:
            cfg = config.load(args.check_config)
        except config.ConfigError as exc:
            print(f"hermesd: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{args.check_config}: ok ({len(cfg.agents)} agents, {len(cfg.routes)} routes)")
        return EXIT_OK

    config_path = args.config
    if config_path is None and Path(config.DEFAULT_CONFIG_PATH).exists():
        config_path = config.DEFAULT_CONFIG_PATH
    try:
        cfg = config.load(config_path) if config_path else config.embedded_default()
        log.configure(cfg.daemon.log_level, cfg.daemon.log_format, cfg.daemon.log_file)
        check_user(cfg)
        claim_runtime_dir(Path(cfg.daemon.runtime_dir))  # locked until the daemon exits
        Path(cfg.daemon.state_dir).mkdir(mode=0o750, parents=True, exist_ok=True)
        share_state_dir(cfg)
    except (config.ConfigError, RuntimeDirTaken, CannotDropPrivileges, OSError) as exc:
        print(f"hermesd: {exc}", file=sys.stderr)
        return EXIT_FAILURE

    from setproctitle import setproctitle

    setproctitle("hermesd: daemon")  # not "python3 -m hermesd.daemon" in ps and systemctl status
    from hermesd.zygote import Zygote, start_zygote

    hermes_agents = any(agent.runtime == "hermes" for agent in cfg.agents.values())
    zygote_pid, channel = start_zygote(preload_hermes=hermes_agents)

    import anyio

    from hermesd.service import Service
    from hermesd.spool import SpoolUnavailable

    try:
        service = Service(cfg, config_path, Zygote(zygote_pid, channel))
    except SpoolUnavailable as exc:
        print(f"hermesd: {exc}", file=sys.stderr)
        channel.close()  # the zygote exits when its channel closes
        os.waitpid(zygote_pid, 0)
        return EXIT_FAILURE
    return anyio.run(service.run)


if __name__ == "__main__":
    sys.exit(main())
