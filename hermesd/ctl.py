"""`hermesctl`: control a running hermesd and chat with its agents.

Plain blocking sockets and no event loop: a command is one request and one answer, and
the tool should start in milliseconds.  Exit codes (DESIGN §7): 0 ok, 1 the command
failed, 2 usage, 3 the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from hermesd import log, protocol

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
FOLLOW_EVERY = 0.5  # seconds between polls of `logs --follow`
SYSTEM_SOCKET = Path("/run/hermesd/control.sock")


class Unreachable(Exception):
    pass


class Failed(Exception):
    pass


class Connection:
    """A blocking framed JSON connection to one of the daemon's sockets."""

    def __init__(self, path: Path, incoming: Any, outgoing: Any) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            raise Unreachable(f"cannot connect to {path}: {exc.strerror}") from None
        self._in = protocol.Codec(incoming, json=True)
        self._out = protocol.Codec(outgoing, json=True)
        self._reader = protocol.FrameReader()
        self._pending: list[Any] = []

    def send(self, message: Any) -> None:
        try:
            self.sock.sendall(self._out.encode(message))
        except OSError as exc:
            raise Unreachable(f"daemon connection lost: {exc.strerror}") from None

    def receive(self, timeout: float | None = None) -> Any:
        self.sock.settimeout(timeout)
        while not self._pending:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError as exc:
                raise Unreachable(f"daemon connection lost: {exc.strerror}") from None
            if not data:
                raise Unreachable("daemon closed the connection")
            self._pending = [self._in.decode(body) for body in self._reader.feed(data)]
        return self._pending.pop(0)

    def buffered(self) -> bool:
        """Frames already read (several can come in one read) wait here: a selector that
        watches the socket does not see them."""
        return bool(self._pending)


# ---------------------------------------------------------------- control commands


def request(path: Path, message: protocol.ControlRequest) -> Any:
    connection = Connection(path, protocol.ControlReply, protocol.ControlRequest)
    connection.send(message)
    reply: protocol.ControlReply = connection.receive()
    if not reply.ok:
        raise Failed(reply.error)
    return reply.data


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value}B"
    scaled = float(value)
    for unit in ("K", "M", "G"):
        scaled /= 1024
        if scaled < 1024 or unit == "G":
            break
    return f"{scaled:.1f}{unit}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def print_status(data: dict[str, Any]) -> None:
    daemon = data["daemon"]
    print(f"hermesd {daemon['version']}  pid {daemon['pid']}  {daemon['state']}  "
          f"up {_duration(daemon['uptime'])}  config {daemon['config']}")
    platforms = data.get("platforms", {})
    if platforms:
        print("platforms: " + ", ".join(
            f"{name} {info.get('state', '?')}" + (f" ({info['error']})" if info.get("error") else "")
            for name, info in sorted(platforms.items())))
    if daemon.get("memory_limits"):
        print(f"memory_max enforced by: {daemon['memory_limits']}")
    if daemon.get("spool", "ok") != "ok":
        print(f"spool: NOT ACCEPTING new messages: {daemon['spool']}")
    rows = [["AGENT", "STATE", "PID", "UPTIME", "RESTARTS", "RSS", "USS", "QUEUE", "REFUSED", "SANDBOX",
             "LAST ERROR"]]
    for agent in data["agents"]:
        rows.append([
            agent["agent"], agent["state"], str(agent["pid"] or "-"), _duration(agent["uptime"]),
            str(agent["restarts"]), _size(agent["rss"]), _size(agent["uss"]), str(agent["queue"]),
            str(agent.get("refused", 0)), agent.get("sandbox") or "-", agent["last_error"],
        ])  # fmt: skip
    print(_table(rows))


def print_agents(data: list[dict[str, Any]]) -> None:
    rows = [["AGENT", "RUNTIME", "STATE", "MODEL", "WORKSPACE"]]
    rows += [[a["agent"], a["runtime"], a["state"], a["model"] or "-", a["workspace"]] for a in data]
    print(_table(rows))


def print_routes(data: dict[str, Any]) -> None:
    rows = [["#", "MATCH", "AGENT"]]
    rows += [[str(i), r["match"], r["agent"]] for i, r in enumerate(data["routes"], 1)]
    print(_table(rows))
    print(f"default_agent: {data['default_agent'] or '(none: unmatched messages are dropped)'}")
    if "resolved" in data:
        resolved = data["resolved"]
        print(f"{resolved['key']} -> {resolved['agent'] or '(dropped)'}  [{resolved['rule']}]")


# ---------------------------------------------------------------- local platform


class LocalSession:
    """One conversation on the local platform, as `send` and `chat` use it."""

    def __init__(self, path: Path, session_key: str, agent: str | None) -> None:
        self.connection = Connection(path, protocol.LocalFrame, protocol.LocalFrame)
        self.session_key = session_key
        self.agent = agent
        self.waiting: set[int] = set()  # msg ids that still owe replies
        self.unaccepted = 0  # sent, but the daemon has not yet said which msg id they got
        self.failed = 0  # messages the daemon could not answer (no agent, failed turn)

    def attach(self, show: Any) -> None:
        """Join the conversation; returns once the daemon said what is still owed."""
        self.connection.send(protocol.LocalAttach(self.session_key))
        while True:
            frame = self.connection.receive()
            self.handle(frame, show)
            if isinstance(frame, protocol.LocalAttached):
                return

    def send(self, text: str) -> None:
        self.unaccepted += 1
        self.connection.send(protocol.LocalSend(
            session_key=self.session_key, text=text, client_id=uuid.uuid4().hex, agent=self.agent
        ))  # fmt: skip

    def handle(self, frame: Any, show: Any) -> None:
        """Track which messages still owe replies; hand replies to `show`."""
        if isinstance(frame, protocol.LocalAttached):
            self.waiting.update(frame.pending)
        elif isinstance(frame, protocol.LocalAccepted):
            self.unaccepted -= 1
            self.waiting.add(frame.msg_id)
        elif isinstance(frame, protocol.LocalReply):
            show(frame)
        elif isinstance(frame, protocol.LocalDone):
            self.waiting.discard(frame.msg_id)
            if frame.error:
                self.failed += 1
                print(f"hermesctl: message {frame.msg_id}: {frame.error}", file=sys.stderr)
        elif isinstance(frame, protocol.LocalError):
            raise Failed(frame.error)

    def wait_all(self, deadline: float, show: Any) -> None:
        """Until every message is answered; fails if any could not be."""
        self._wait(deadline, show)
        if self.failed:
            raise Failed(f"{self.failed} message(s) not answered")

    def _wait(self, deadline: float, show: Any) -> None:
        while self.waiting or self.unaccepted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failed(f"no answer within the timeout; messages {sorted(self.waiting)} "
                             "stay queued and are answered to the next chat or send on this session")
            try:
                self.handle(self.connection.receive(remaining), show)
            except TimeoutError:
                continue


def _text(reply: protocol.LocalReply) -> str:
    """A reply as a terminal shows it: files it carries as their paths."""
    return "\n".join([reply.text, *(f"[file: {path}]" for path in reply.files)]).strip("\n")


def cmd_send(local: Path, key: str, text: str, agent: str | None, timeout: float, as_json: bool) -> None:
    session = LocalSession(local, key, agent)
    session.send(text)

    def show(reply: protocol.LocalReply) -> None:
        print(json.dumps(msgspec.to_builtins(reply)) if as_json else _text(reply), flush=True)

    session.wait_all(time.monotonic() + timeout, show)


def cmd_chat(local: Path, agent: str, name: str | None, timeout: float) -> None:
    session = LocalSession(local, f"local:{name or agent}", agent)
    interactive = sys.stdin.isatty()

    def show(reply: protocol.LocalReply) -> None:
        print(f"{reply.agent}> {_text(reply)}" if interactive else _text(reply), flush=True)

    if interactive:
        print(f"chatting with {agent} on {session.session_key}; Ctrl-D to leave", flush=True)
    session.attach(show)
    selector = selectors.DefaultSelector()
    selector.register(session.connection.sock, selectors.EVENT_READ)
    stdin_open = True
    try:
        selector.register(sys.stdin, selectors.EVENT_READ)
    except PermissionError:  # a regular file or /dev/null: not pollable, never blocks
        for line in sys.stdin:
            if line.strip():
                session.send(line.rstrip("\n"))
        stdin_open = False
    while stdin_open:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                line = sys.stdin.readline()
                if not line:
                    stdin_open = False
                elif line.strip():
                    session.send(line.rstrip("\n"))
            else:
                session.handle(session.connection.receive(), show)
                while session.connection.buffered():
                    session.handle(session.connection.receive(), show)
    session.wait_all(time.monotonic() + timeout, show)


# ---------------------------------------------------------------- entry point


def _default_socket() -> Path:
    if "HERMESD_SOCKET" in os.environ:
        return Path(os.environ["HERMESD_SOCKET"])
    if SYSTEM_SOCKET.exists():
        return SYSTEM_SOCKET
    from hermesd import config  # only now: it imports the TOML library

    return Path(config.embedded_default().daemon.runtime_dir) / "control.sock"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hermesctl", description="Control a running hermesd.")
    parser.add_argument("--socket", type=Path, help="control socket (default: $HERMESD_SOCKET, "
                        f"{SYSTEM_SOCKET}, or the built-in default's runtime dir)")
    parser.add_argument("--local-socket", type=Path,
                        help="local platform socket (default: local.sock beside the control socket)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    # --json is also accepted after the command (`hermesctl status --json`)
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="print machine-readable JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", parents=[json_too],
                        help="daemon and per-agent state, memory, queue, last error")
    commands.add_parser("agents", parents=[json_too], help="configured agents")
    routes = commands.add_parser("routes", parents=[json_too],
                                 help="routing table; with KEY, where KEY goes")
    routes.add_argument("key", nargs="?")
    reload = commands.add_parser("reload", parents=[json_too],
                                 help="re-read the config; restart only changed agents and platforms")
    reload.add_argument("--wait", action="store_true", help="return once changes are applied")
    for action in ("start", "stop", "restart"):
        commands.add_parser(action, parents=[json_too], help=f"{action} one agent").add_argument("agent")
    send = commands.add_parser("send", parents=[json_too],
                               help="send one message on the local platform, print replies")
    send.add_argument("key", help="session key, e.g. local:me or telegram:dm:42")
    send.add_argument("text")
    send.add_argument("--agent", help="talk to this agent instead of the one the routes pick")
    send.add_argument("--timeout", type=float, default=60.0)
    logs = commands.add_parser("logs", help="an agent's recent log lines (the daemon keeps "
                                            f"the last {log.KEPT_PER_AGENT})")
    logs.add_argument("agent")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="how many (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="then print new lines as they come")
    chat = commands.add_parser("chat", help="interactive chat with an agent (session local:AGENT)")
    chat.add_argument("agent")
    chat.add_argument("--session", help="session name (key local:NAME; default: the agent id)")
    chat.add_argument("--timeout", type=float, default=60.0,
                      help="at end of input, how long to wait for outstanding replies")
    imp = commands.add_parser("import-profile", parents=[json_too],
                              help="add a Hermes profile directory as a new agent")
    imp.add_argument("path", type=Path, help="the profile, e.g. ~/.hermes/profiles/NAME")
    imp.add_argument("--as", dest="agent", required=True, metavar="ID", help="the new agent's id")
    imp.add_argument("--config", type=Path, metavar="FILE",
                     help="config file to add the agent to (default: the running daemon's)")
    imp.add_argument("--runtime", choices=("openai", "hermes", "echo"), default="openai",
                     help="the agent's runtime (default: openai)")
    imp.add_argument("--llm", metavar="NAME", help="[llm.NAME] provider (default: llm.default)")
    imp.add_argument("--reload", action="store_true", help="reload the daemon to start the agent")
    return parser


def cmd_import_profile(control: Path, args: argparse.Namespace) -> None:
    from hermesd import profiles  # only now: it imports the TOML library

    try:
        profiles.check_agent_id(args.agent)
        profiles.check_profile(args.path)
        daemon = None
        if args.config is None or args.reload:
            daemon = request(control, protocol.StatusRequest())["daemon"]
        config_path = profiles.config_file(args.config, daemon)
        if args.reload and args.config is not None:
            profiles.check_same_config(config_path, daemon)
        result = profiles.import_profile(args.path, args.agent, config_path, args.runtime, args.llm)
    except profiles.ProfileError as exc:
        raise Failed(str(exc)) from None
    out = result.as_dict()
    if not args.json:
        print(profiles.describe(result), flush=True)
    if args.reload:
        out["reload"] = request(control, protocol.ReloadRequest(wait=True))
        if not args.json:
            _print_reload(out["reload"])
    elif not args.json:
        print('run "hermesctl reload" to start it')
    if args.json:
        print(json.dumps(out, indent=2))


def cmd_logs(control: Path, agent: str, lines: int, follow: bool) -> None:
    """Print the agent's recent lines, then (with --follow) new ones as they come, polling
    the daemon every FOLLOW_EVERY seconds until interrupted."""
    entries = request(control, protocol.LogsRequest(agent))["lines"][-lines:] if lines else []
    last = entries[-1][0] if entries else 0
    while True:
        for number, line in entries:
            print(line, flush=True)
            last = number
        if not follow:
            return
        time.sleep(FOLLOW_EVERY)
        entries = request(control, protocol.LogsRequest(agent, after=last))["lines"]


def run(args: argparse.Namespace) -> None:
    control = args.socket or _default_socket()
    local = args.local_socket or control.with_name("local.sock")
    command = args.command
    if command == "send":
        return cmd_send(local, args.key, args.text, args.agent, args.timeout, args.json)
    if command == "chat":
        return cmd_chat(local, args.agent, args.session, args.timeout)
    if command == "import-profile":
        return cmd_import_profile(control, args)
    if command == "logs":
        return cmd_logs(control, args.agent, args.lines, args.follow)
    message: protocol.ControlRequest
    if command == "status":
        message, show = protocol.StatusRequest(), print_status
    elif command == "agents":
        message, show = protocol.AgentsRequest(), print_agents
    elif command == "routes":
        message, show = protocol.RoutesRequest(args.key), print_routes
    elif command == "reload":
        message, show = protocol.ReloadRequest(args.wait), _print_reload
    else:
        message, show = protocol.AgentCommand(command, args.agent), _print_agent_command
    data = request(control, message)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        show(data)


def _print_reload(diff: dict[str, list[str]]) -> None:
    """e.g. `reloaded; added: coder; platforms restarted: telegram`."""
    labels = {"platforms": "platforms restarted"}
    changes = [f"{labels.get(what, what)}: {', '.join(ids)}" for what, ids in diff.items() if ids]
    print("reloaded; " + ("; ".join(changes) if changes else "no agent changed"))


def _print_agent_command(data: dict[str, Any]) -> None:
    print(f"{data['agent']}: {data['state']}")


def main(argv: list[str] | None = None) -> NoReturn:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except Unreachable as exc:
        print(f"hermesctl: daemon unreachable: {exc}", file=sys.stderr)
        sys.exit(EXIT_UNREACHABLE)
    except Failed as exc:
        print(f"hermesctl: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except protocol.ProtocolError as exc:
        print(f"hermesctl: bad answer from daemon: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()
