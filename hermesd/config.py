"""The daemon's configuration: `/etc/hermesd/hermesd.toml` read into msgspec Structs.

A config is only ever replaced whole: `load` validates everything (types, unknown keys,
references between agents, routes and providers, readable token files) and either
returns a `Config` or raises one `ConfigError` naming file, line and key, so a bad reload
can keep the old config running and tell the operator exactly what to fix.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from typing import Annotated, Any, Literal, get_args

import msgspec
import tomlkit
from tomlkit.exceptions import TOMLKitError

from . import protocol
from ._config_errors import dotted, explain
from ._toml_lines import KeyLines, KeyPath, editor_line

DEFAULT_CONFIG_PATH = "/etc/hermesd/hermesd.toml"

Seconds = Annotated[float, msgspec.Meta(gt=0)]
BUILTIN_RUNTIMES = ("echo", "openai", "hermes")
PYTHON_RUNTIME = re.compile(r"python:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
"""`python:<module>:<factory>`: an operator's runtime, imported by the worker only."""
Tool = Literal["memory", "session_search", "skills", "cron", "send_to_agent", "send_file",
               "files", "terminal", "web", "browser", "delegation", "code_execution"]
AllowedUsers = list[int] | Literal["*"]  # user ids, or "*" for everyone (said explicitly)
PROFILE_LLM = "profile"
"""`llm = "profile"`: a hermes agent calls the model its workspace's config.yaml names, with
the keys of its .env, as hermes-agent itself would (workers/runtimes/hermes.py)."""

HERMES_TOOLS = ("files", "terminal", "web", "browser", "delegation", "code_execution")
"""hermes-agent's own toolsets: only `runtime = "hermes"` has them, and only when listed
(they run commands or programs, confined by the worker's sandbox, or reach the network)."""
HERMES_TOOLSET = re.compile(r"hermes:[a-z][a-z0-9_-]{0,63}")
"""`hermes:<toolset>`: any other of hermes-agent's toolsets by hermes' own name (vision,
image_gen, tts ...), for runtime = "hermes" only; whether hermes-agent has it, and can
offer it here, only the worker can tell (it logs `hermes_tool_unavailable` if not)."""
ALL_TOOLS: tuple[str, ...] = tuple(t for t in get_args(Tool) if t not in HERMES_TOOLS)
"""The tools every runtime has, on unless `tools` says otherwise."""

AGENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""Agent ids appear in session keys, paths and process titles, so they stay plain."""

ROUTE_PLATFORMS = ("telegram", "discord", "local", "agent", "*")

INT64_MAX = 2**63 - 1
"""TOML integers are 64-bit, and so are the wire format's: tomlkit reads longer ones."""

_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ConfigError(Exception):
    """An invalid config, located as `<file>:<line>: <key>: <message>` (no key for a
    TOML syntax error; line 0 when the file could not be read at all)."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        super().__init__(f"{path}:{line}: {key + ': ' if key else ''}{message}")


def parse_size(text: str) -> int:
    """"256M" -> bytes.  Units are binary (K = 1024), as in systemd's MemoryMax=."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f'expected a size like "512K", "256M", "1G" or bytes, got "{text}"')
    size = int(match[1]) * _UNITS[match[2].upper()]
    if size > INT64_MAX:
        raise ValueError(f'size "{text}" is too large')
    return size


# --------------------------------------------------------------------------- the structs


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every table: a misspelt key is an error, never silently ignored."""


class DaemonConfig(_Section):
    state_dir: str = "/var/lib/hermesd"
    runtime_dir: str = "/run/hermesd"
    default_agent: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    log_file: str | None = None
    """Absolute path; unset = standard error (the journal under systemd)."""
    user: str | None = None
    """Workers of a daemon started as root run as this user (see `Config.run_as`)."""
    heartbeat_interval: Seconds = 5.0
    heartbeat_timeout: Seconds = 20.0
    backoff_initial: Seconds = 0.5
    backoff_max: Seconds = 60.0
    backoff_reset_after: Seconds = 30.0
    fatal_failures: Annotated[int, msgspec.Meta(gt=0)] = 5
    fatal_window: Seconds = 60.0
    stop_timeout: Seconds = 10.0
    min_free_space: Annotated[int, msgspec.Meta(ge=0)] = 32 << 20
    """Bytes free in state_dir below which new messages are refused; the TOML may say "32M"."""


class LLMConfig(_Section):
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 2

    def spec(self) -> protocol.LLMSpec:
        return protocol.LLMSpec(**msgspec.structs.asdict(self))


class _BotConfig(_Section, dict=True):
    """A bot platform.  `dict=True` lets `load` attach where the token keys were written
    (not a config key, not compared), so `read_token` can point at them later."""

    token_file: str | None = None
    token_env: str | None = None
    allowed_users: AllowedUsers = []
    api_base: str | None = None

    def read_token(self) -> str:
        """The bot token, read now: a token rotated on disk is picked up on reconnect."""
        if self.token_file is not None:
            try:
                with open(self.token_file, encoding="utf-8") as file:
                    token = file.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                message = f"cannot read {self.token_file}: {reason}"
                raise self._error("token_file", message) from None
            if not token:
                raise self._error("token_file", f"{self.token_file} is empty")
            return token
        token = os.environ.get(self.token_env or "", "").strip()
        if not token:
            raise self._error("token_env", f"${self.token_env} is unset or empty")
        return token

    def _error(self, key: str, message: str) -> ConfigError:
        path, line, dotted = self.__dict__.get("_origin", {}).get(key, ("<config>", 0, key))
        return ConfigError(path, line, dotted, message)


class TelegramConfig(_BotConfig):
    group_sessions: Literal["per_user", "shared"] = "per_user"
    require_mention_in_groups: bool = True


class DiscordConfig(_BotConfig):
    gateway_url: str | None = None
    allowed_roles: list[int] = []
    """Members holding one of these roles may talk too (in guilds), besides allowed_users."""
    allowed_guilds: list[int] = []
    """Guilds the bot answers in; [] = any guild it is in."""
    channel_sessions: Literal["per_user", "shared"] = "per_user"
    require_mention: bool = True
    """In guild channels, answer only when mentioned or replied to (routes may override)."""
    reply_in_thread: bool = False
    """In guild channels, answer in a new thread started from the message, and go on there
    (routes may override)."""


class LocalConfig(_Section):
    enabled: bool = True
    socket: str | None = None
    """After `load`, always set: the default is `<runtime_dir>/local.sock`."""


class Platforms(_Section):
    telegram: TelegramConfig | None = None
    discord: DiscordConfig | None = None
    local: LocalConfig = msgspec.field(default_factory=LocalConfig)


class SharedPath(_Section):
    path: str
    mode: Literal["ro", "rw"] = "ro"


class AgentConfig(_Section):
    runtime: str
    """One of BUILTIN_RUNTIMES or a PYTHON_RUNTIME value (checked by `_Loader.agent`)."""
    llm: str | LLMConfig | None = None
    workspace: str | None = None
    """After `load`, always the absolute path (default `<state_dir>/agents/<id>`)."""
    shared_paths: list[SharedPath] = []
    can_message: list[str] = []
    memory_max: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """Bytes; the TOML may say "256M"."""
    max_queue: Annotated[int, msgspec.Meta(ge=1)] = 100
    """Messages waiting or running for this agent; past it, senders get a "busy" reply."""
    tools: list[str] = msgspec.field(default_factory=lambda: list(ALL_TOOLS))
    """Names of `Tool`, or HERMES_TOOLSET values (checked by `_Loader.check_tools`)."""
    echo_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    history_budget: Annotated[int, msgspec.Meta(ge=1000)] = 48_000
    """Characters of conversation history sent to the model; older messages are left out."""
    max_tool_steps: Annotated[int, msgspec.Meta(ge=1, le=50)] = 8


class Route(_Section):
    match: str
    agent: str
    allowed_users: AllowedUsers | None = None
    """Replaces the platform's allowed_users for the conversations this route matches."""
    require_mention: bool | None = None
    """Replaces the platform's mention rule (Discord channels) for these conversations."""
    reply_in_thread: bool | None = None
    """Replaces Discord's reply_in_thread for these conversations."""


class _Document(_Section):
    """The top level, loosely typed: each section is validated on its own so that an
    error's path keeps the agent id or provider name (msgspec elides dict keys)."""

    daemon: dict[str, Any] = {}
    llm: dict[str, Any] = {}
    platforms: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    routes: list[Any] = []


class Config(_Section):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    llm: dict[str, LLMConfig] = {}
    platforms: Platforms = msgspec.field(default_factory=Platforms)
    agents: dict[str, AgentConfig] = {}
    routes: list[Route] = []
    source: str = "<string>"
    run_as: protocol.RunAs | None = None
    """`daemon.user` resolved at load (not a config key)."""

    def worker_spec(self, agent_id: str) -> protocol.WorkerSpec:
        """What the worker for `agent_id` runs with.  Built only from config values, so
        equal configs give equal specs and a reload restarts only agents whose spec changed."""
        agent = self.agents[agent_id]
        llm = agent.llm
        if llm is None and agent.runtime != "echo" and "default" in self.llm:
            llm = "default"
        if llm == PROFILE_LLM:
            llm = None  # the hermes runtime resolves the profile's own model
        if isinstance(llm, str):
            llm = self.llm[llm]
        return protocol.WorkerSpec(
            agent_id=agent_id,
            runtime=agent.runtime,
            workspace=agent.workspace or "",
            llm=llm.spec() if llm else None,
            shared_paths=tuple(protocol.SharedPathSpec(p.path, p.mode) for p in agent.shared_paths),
            can_message=tuple(agent.can_message),
            tools=tuple(agent.tools),
            memory_max=agent.memory_max,
            max_queue=agent.max_queue,
            echo_delay=agent.echo_delay,
            history_budget=agent.history_budget,
            max_tool_steps=agent.max_tool_steps,
            run_as=self.run_as,
        )

    def worker_specs(self) -> dict[str, protocol.WorkerSpec]:
        return {agent_id: self.worker_spec(agent_id) for agent_id in self.agents}


# --------------------------------------------------------------------------- entry points


def load(path: str | os.PathLike[str], running: Config | None = None) -> Config:
    """Read and validate `path`.  With `running` (a reload), also refuse to move the
    directories the running daemon holds open."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(source, 0, "", f"cannot read: {reason}") from None
    return loads(text, source, running)


def loads(text: str, source: str = "<string>", running: Config | None = None) -> Config:
    return _Loader(text, source, running).load()


_EMBEDDED = """\
# Built in: used when hermesd has no --config and there is no {default_path}.
[daemon]
state_dir = {state_dir}
runtime_dir = {runtime_dir}
default_agent = "echo"

[agents.echo]
runtime = "echo"
"""


def embedded_default() -> Config:
    """A config that works for an unprivileged user with nothing set up: a local socket
    and one echo agent, state and sockets in the user's XDG directories."""
    state_home = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state_home):  # the XDG spec says to ignore relative paths
        state_home = os.path.expanduser("~/.local/state")
    runtime_home = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime_home):
        runtime_dir = os.path.join(runtime_home, "hermesd")
    else:
        runtime_dir = f"/tmp/hermesd-{os.getuid()}"
    text = _EMBEDDED.format(
        default_path=DEFAULT_CONFIG_PATH,
        state_dir=json.dumps(os.path.join(state_home, "hermesd")),  # a valid TOML string
        runtime_dir=json.dumps(runtime_dir),
    )
    return loads(text, "<embedded default>")


# --------------------------------------------------------------------------- validation


class _Loader:
    """One load: the text, where its keys are, and the checks in order."""

    def __init__(self, text: str, source: str, running: Config | None = None) -> None:
        self.text, self.source, self.keys = text, source, KeyLines(text)
        self.running = running

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.source, self.keys.line_of(path), dotted(path), message)

    def convert(self, raw: Any, tp: Any, path: KeyPath) -> Any:
        """msgspec.convert, with its error turned into a located ConfigError."""
        try:
            return msgspec.convert(raw, tp)
        except msgspec.ValidationError as exc:
            sub, message = explain(exc, raw, tp)
            raise self.error(path + tuple(sub), message) from None

    def load(self) -> Config:
        try:
            raw = tomlkit.parse(self.text).unwrap()
        except TOMLKitError as exc:
            raise self.syntax_error(exc) from None
        self.check_integers(raw, ())
        doc: _Document = self.convert(raw, _Document, ())
        daemon = self.daemon(doc.daemon)
        for key in ("state_dir", "runtime_dir"):
            if self.running and getattr(daemon, key) != getattr(self.running.daemon, key):
                raise self.error(("daemon", key), "cannot change while hermesd runs; restart it")
        config = Config(
            daemon=daemon,
            llm={name: self.llm(value, ("llm", name)) for name, value in doc.llm.items()},
            platforms=self.platforms(doc.platforms, daemon),
            agents={aid: self.agent(aid, value, daemon) for aid, value in doc.agents.items()},
            routes=[self.route(value, ("routes", i)) for i, value in enumerate(doc.routes)],
            source=self.source,
            run_as=self.run_as(daemon.user),
        )
        self.check_references(config)
        return config

    def syntax_error(self, exc: TOMLKitError) -> ConfigError:
        line = getattr(exc, "line", None)
        if line is not None:
            line = editor_line(self.text, line, getattr(exc, "col", 0))
        dup = self.keys.duplicate
        if dup and (line is None or dup.line <= line):  # tomlkit notices a duplicate late
            is_agent = len(dup.path) == 2 and dup.path[0] == "agents"
            what = f'agent id "{dup.path[1]}" is ' if is_agent else ""
            message = f"{what}defined twice (first at line {dup.first_line})"
            return ConfigError(self.source, dup.line, dotted(dup.path), message)
        message = re.sub(r" at line \d+ col \d+$", "", str(exc))
        message = message.replace("Unexpected character: '\\x00'", "unexpected end of file")
        return ConfigError(self.source, line or 1, "", f"TOML syntax error: {message}")

    def check_integers(self, value: Any, path: KeyPath) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.check_integers(item, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.check_integers(item, path + (i,))
        elif isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise self.error(path, f"integer {value} is out of range (TOML integers are 64-bit)")

    def absolute(self, value: str, path: KeyPath) -> None:
        if not os.path.isabs(value):
            raise self.error(path, f'must be an absolute path, got "{value}"')

    def sizes(self, raw: Any, path: KeyPath, keys: tuple[str, ...]) -> Any:
        """Size keys may be written "256M": convert them to bytes before validation."""
        if not isinstance(raw, dict):
            return raw
        for key in keys:
            if isinstance(raw.get(key), str):
                try:
                    raw = {**raw, key: parse_size(raw[key])}
                except ValueError as exc:
                    raise self.error(path + (key,), str(exc)) from None
        return raw

    def daemon(self, raw: dict[str, Any]) -> DaemonConfig:
        raw = self.sizes(raw, ("daemon",), ("min_free_space",))
        daemon: DaemonConfig = self.convert(raw, DaemonConfig, ("daemon",))
        for key in ("state_dir", "runtime_dir", "log_file"):
            if getattr(daemon, key) is not None:
                self.absolute(getattr(daemon, key), ("daemon", key))
        if daemon.heartbeat_timeout <= daemon.heartbeat_interval:
            raise self.error(("daemon", "heartbeat_timeout"), "must exceed heartbeat_interval")
        if daemon.backoff_max < daemon.backoff_initial:
            raise self.error(("daemon", "backoff_max"), "must be at least backoff_initial")
        return daemon

    def run_as(self, user: str | None) -> protocol.RunAs | None:
        """Look the user up now: a typo must fail the load, not every worker's start."""
        if user is None:
            return None
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise self.error(("daemon", "user"), f'no user "{user}" on this system') from None
        groups = tuple(sorted(set(os.getgrouplist(user, entry.pw_gid))))
        return protocol.RunAs(user=user, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)

    def llm(self, raw: Any, path: KeyPath) -> LLMConfig:
        """A named provider, [llm.NAME]."""
        if path == ("llm", PROFILE_LLM):
            raise self.error(path, f'the name "{PROFILE_LLM}" is reserved (`llm = "{PROFILE_LLM}"` makes '
                             "a hermes agent use its own config.yaml): name this provider otherwise")
        llm: LLMConfig = self.convert(raw, LLMConfig, path)
        self.check_llm(llm, path)
        return llm

    def check_llm(self, llm: LLMConfig, path: KeyPath) -> None:
        if not re.match(r"https?://", llm.base_url):
            raise self.error(path + ("base_url",), f'expected an http(s) URL, got "{llm.base_url}"')
        if llm.api_key_env is not None and llm.api_key_file is not None:
            raise self.error(path + ("api_key_file",), "set api_key_env or api_key_file, not both")

    def platforms(self, raw: dict[str, Any], daemon: DaemonConfig) -> Platforms:
        platforms: Platforms = self.convert(raw, Platforms, ("platforms",))
        for name in ("telegram", "discord"):
            bot: _BotConfig | None = getattr(platforms, name)
            if bot is None:
                continue
            path: KeyPath = ("platforms", name)
            if (bot.token_file is None) == (bot.token_env is None):
                raise self.error(path, "set exactly one of token_file and token_env")
            bot.__dict__["_origin"] = {
                key: (self.source, self.keys.line_of(path + (key,)), dotted(path + (key,)))
                for key in ("token_file", "token_env")
            }
            if bot.token_file is not None:
                self.absolute(bot.token_file, path + ("token_file",))
                bot.read_token()  # fail at load, not at the first reconnect
        local = platforms.local
        if local.socket is None:
            local.socket = os.path.join(daemon.runtime_dir, "local.sock")
        self.absolute(local.socket, ("platforms", "local", "socket"))
        return platforms

    def agent(self, agent_id: str, raw: Any, daemon: DaemonConfig) -> AgentConfig:
        path: KeyPath = ("agents", agent_id)
        if not AGENT_ID.fullmatch(agent_id):
            raise self.error(path, f"agent id must match ^{AGENT_ID.pattern}$ (it is used in "
                                   "session keys, paths and process titles)")
        raw = self.sizes(raw, path, ("memory_max",))
        agent: AgentConfig = self.convert(raw, AgentConfig, path)
        self.check_runtime(agent.runtime, path + ("runtime",))
        self.check_tools(agent, path + ("tools",))
        if isinstance(agent.llm, LLMConfig):
            self.check_llm(agent.llm, path + ("llm",))
        for i, shared in enumerate(agent.shared_paths):
            self.absolute(shared.path, path + ("shared_paths", i, "path"))
        workspace = agent.workspace or f"agents/{agent_id}"
        agent.workspace = os.path.normpath(os.path.join(daemon.state_dir, workspace))
        return agent

    def check_tools(self, agent: AgentConfig, path: KeyPath) -> None:
        for i, tool in enumerate(agent.tools):
            toolset = HERMES_TOOLSET.fullmatch(tool)
            if tool not in get_args(Tool) and not toolset:
                names = ", ".join(f'"{name}"' for name in get_args(Tool))
                raise self.error(path + (i,), f'expected one of {names} or "hermes:TOOLSET", '
                                              f'got "{tool}"')
            if (tool in HERMES_TOOLS or toolset) and agent.runtime != "hermes":
                raise self.error(path + (i,), f'"{tool}" is a tool of runtime = "hermes" only '
                                              f'(this agent runs "{agent.runtime}")')

    def check_runtime(self, runtime: str, path: KeyPath) -> None:
        if runtime in BUILTIN_RUNTIMES or PYTHON_RUNTIME.fullmatch(runtime):
            return
        if runtime.startswith("python:"):
            raise self.error(path, 'expected "python:MODULE:FACTORY" (a dotted module name and '
                                   f'the name of a function in it), got "{runtime}"')
        expected = ", ".join(f'"{name}"' for name in BUILTIN_RUNTIMES)
        raise self.error(path, f'expected one of {expected} or "python:MODULE:FACTORY", '
                               f'got "{runtime}"')

    def route(self, raw: Any, path: KeyPath) -> Route:
        route: Route = self.convert(raw, Route, path)
        segments = route.match.split(":")
        if not all(segments):
            raise self.error(path + ("match",), f'empty segment in "{route.match}"')
        if segments[0] not in ROUTE_PLATFORMS:
            starts = ", ".join(f'"{p}"' for p in ROUTE_PLATFORMS)
            raise self.error(path + ("match",), f'"{route.match}" must start with one of {starts}')
        return route

    def check_references(self, config: Config) -> None:
        """Names that must point at something defined elsewhere in the file."""
        agents, providers, daemon = config.agents, config.llm, config.daemon
        if daemon.default_agent is not None and daemon.default_agent not in agents:
            raise self.error(("daemon", "default_agent"), _no_agent(daemon.default_agent, agents))
        for agent_id, agent in agents.items():
            path: KeyPath = ("agents", agent_id)
            if agent.llm == PROFILE_LLM:
                if agent.runtime != "hermes":
                    raise self.error(path + ("llm",), f'"{PROFILE_LLM}" (the model of a hermes '
                                     'profile\'s config.yaml) is for runtime = "hermes" only')
            elif isinstance(agent.llm, str) and agent.llm not in providers:
                known = ", ".join(providers) or "none"
                message = f"no provider [llm.{agent.llm}] (defined: {known})"
                raise self.error(path + ("llm",), message)
            if agent.llm is None and agent.runtime == "openai" and "default" not in providers:
                raise self.error(path + ("llm",), "runtime openai needs an llm: name a provider, "
                                 "give an inline table, or define [llm.default]")
            for i, target in enumerate(agent.can_message):
                if target == agent_id:
                    raise self.error(path + ("can_message", i), "an agent cannot message itself")
                if target not in agents:
                    raise self.error(path + ("can_message", i), _no_agent(target, agents))
        for i, route in enumerate(config.routes):
            if route.agent not in agents:
                raise self.error(("routes", i, "agent"), _no_agent(route.agent, agents))


def _no_agent(name: str, agents: dict[str, AgentConfig]) -> str:
    return f'no agent "{name}" is defined (agents: {", ".join(agents) or "none"})'
