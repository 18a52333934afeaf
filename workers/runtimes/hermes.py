"""The hermes runtime: the real hermes-agent (the `hermes` extra) answers each message.

Each turn builds an `AIAgent` over this agent's workspace (its hermes home, see
workers.hermes_home) and runs one `run_conversation` in a thread: hermes-agent is
synchronous, and the event loop must keep answering heartbeats and other sessions.
Hermes keeps the conversation in its own session database; each hermesd session key has
one hermes session id (recorded in the worker's state.db), and its history is read back
from that database every turn, so a conversation survives a worker restart.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from hermesd.protocol import Deliver, LLMSpec
from workers import hermes_cron, hermes_home, llm, loopback
from workers.runtimes import hermes_commands as commands
from workers.runtimes import hermes_tools
from workers.runtimes.home import AgentHome, Say

TOOLSETS = {"memory": "memory", "session_search": "session_search", "skills": "skills",
            "files": "file", "terminal": "terminal", "web": "web", "browser": "browser",
            "delegation": "delegation", "code_execution": "code_execution",
            "cron": "cronjob", **hermes_tools.TOOLSETS}
"""hermesd tool names (`tools` in hermesd.toml) and the hermes toolsets they enable.
`files`, `terminal` and `code_execution` (a Python child of the worker) run in the
worker's process tree, so its sandbox (workers/landlock.py) is what confines them to the
workspace and the shared paths; `delegation`'s sub-agents run in the worker too, with the
same provider.  `web` and `browser` need a backend the operator sets up in the workspace
(hermesd.toml(5)).  `cron` is hermes' cronjob tool (jobs in the workspace's
cron/jobs.json, run by workers.hermes_cron); `send_to_agent` and `send_file` are hermesd's
own (workers.runtimes.hermes_tools)."""

ALWAYS = ("todo",)
"""Toolsets with no effect outside the conversation."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS hermes_sessions (
    session_key TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL
);
"""

class HermesRuntime:
    def __init__(self, home: AgentHome) -> None:
        if importlib.util.find_spec("run_agent") is None:  # said in `hermesctl status`
            raise RuntimeError("runtime hermes needs hermes-agent: install hermesd[hermes]")
        self._home = home
        self._root = home.workspace.root
        self._llm: LLMSpec | None = home.spec.llm  # None: the profile's own (`llm = "profile"`)
        hermes_home.enter(self._root)  # before hermes-agent is first imported here
        self._db: Any = None  # hermes_state.SessionDB, opened at the first turn
        home.state.db.executescript(SCHEMA)
        home.scheduler = hermes_cron.HermesCron(home)  # also runs the profile's cron/jobs.json
        hermes_tools.register()
        self._toolsets = [t for t in map(_toolset, home.spec.tools) if t is not None]
        self._toolsets += ALWAYS
        self._offered: set[str] | None = None  # tool names hermes-agent offered (once it has built an agent)
        self._tools_checked = False  # whether the listed tools were checked (at the first turn)
        self._models: dict[str, str] = {}  # per session key, set by /model
        self._running: dict[str, Any] = {}  # session key -> its turn's AIAgent, for /stop

    async def turn(self, message: Deliver) -> AsyncIterator[Say]:
        answer = self._command(message)
        if answer is not None:
            yield Say(answer)
            return
        problem = llm.api_key()[1] if self._llm else None
        if problem:
            self._home.log("error", "llm_failed", message.session_key, error=problem)
            yield Say(f"⚠️ {llm.MISSING_KEY}")
            return
        context = self._home.tool_context(message, 0)  # 0: hermes keeps its own sessions
        try:
            result = await anyio.to_thread.run_sync(
                self._run, message.session_key, self._prompt(message), hermes_tools.Turn.here(context))
        except Exception as exc:
            result = {"failed": True, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._home.scheduler.changed()  # the turn may have made a cron job
        self._report_unavailable(message.session_key)
        reply = result.get("final_response")
        if result.get("interrupted"):
            yield Say("Stopped.")
            return
        if result.get("failed") or not reply:
            error = str(result.get("error") or "no answer")
            self._home.log("error", "llm_failed", message.session_key, error=error[:500])
            yield Say("⚠️ The agent could not answer; the operator's log has the details.")
            return
        yield Say(await hermes_tools.attach_media(reply, context), tuple(context.files))

    def _run(self, session_key: str, text: str, turn: hermes_tools.Turn) -> dict[str, Any]:
        """One hermes turn, in a worker thread."""
        db = self._session_db()
        session_id = self._session_id(session_key)
        hermes_tools.bind(turn)
        history = db.get_messages_as_conversation(session_id, repair_alternation=True)
        agent = _agent(self._provider(session_key), self._toolsets, db, session_id, session_key,
                       self._home.spec.max_tool_steps)
        self._running[session_key] = agent
        self._offered = agent.valid_tool_names
        try:
            return _converse(agent, text, history)
        finally:
            del self._running[session_key]

    def _report_unavailable(self, session_key: str) -> None:
        """Log, at the worker's first turn, each listed tool hermes-agent offers nothing of: it
        leaves out a toolset whose backend or program is missing (a web search key,
        agent-browser), and the model is told nothing."""
        if self._tools_checked or self._offered is None:  # done, or no agent built yet
            return
        self._tools_checked = True
        from toolsets import resolve_toolset

        for name in self._home.spec.tools:
            toolset = _toolset(name)
            if toolset is not None and not set(resolve_toolset(toolset)) & self._offered:
                self._home.log("warning", "hermes_tool_unavailable", session_key, tool=name,
                               reason="hermes-agent offers none of its tools: a backend or "
                                      "program it needs is missing (hermesd.toml(5))")

    def _session_db(self) -> Any:
        if self._db is None:
            from hermes_state import SessionDB

            self._db = SessionDB(db_path=Path(self._root) / hermes_home.SESSION_DB)
        return self._db

    def _session_id(self, session_key: str) -> str:
        """This key's hermes session id, made on first use and kept in state.db."""
        db = self._home.state.db
        row = db.execute("SELECT session_id FROM hermes_sessions WHERE session_key = ?",
                         (session_key,)).fetchone()
        if row is not None:
            return row[0]
        return self._new_session(session_key)

    def _new_session(self, session_key: str) -> str:
        session_id = f"hermesd-{self._home.spec.agent_id}-{secrets.token_hex(6)}"
        self._home.state.db.execute(
            "INSERT INTO hermes_sessions (session_key, session_id) VALUES (?, ?) "
            "ON CONFLICT (session_key) DO UPDATE SET session_id = excluded.session_id",
            (session_key, session_id))
        return session_id

    def jumps_queue(self, message: Deliver) -> bool:
        """/stop is answered beside the session's running turn (see workers.agent)."""
        return commands.command_word(message.text) == "/stop"

    def _provider(self, session_key: str) -> dict[str, Any]:
        """The model `AIAgent` calls: hermesd's provider, or for `llm = "profile"` what
        hermes-agent itself resolves from the workspace's config.yaml and .env (raising, as
        it does, when they name nothing usable: the turn then fails with the reason logged)."""
        if self._llm is not None:
            return {"base_url": self._llm.base_url, "api_key": llm.api_key()[0] or "none",
                    "provider": "custom", "model": self._model(session_key)}
        from hermes_cli.runtime_provider import resolve_runtime_provider

        runtime = resolve_runtime_provider()
        return {"base_url": runtime.get("base_url"), "api_key": runtime.get("api_key"),
                "provider": runtime.get("provider"), "api_mode": runtime.get("api_mode"),
                "model": self._model(session_key)}

    def _model(self, session_key: str) -> str:
        return self._models.get(session_key) or self._default_model()

    def _default_model(self) -> str:
        if self._llm is not None:
            return self._llm.model
        from hermes_cli.config import load_config

        model = load_config().get("model")  # as hermes' gateway reads it
        if isinstance(model, dict):
            model = model.get("default") or model.get("model")
        return str(model or "")

    def _command(self, message: Deliver) -> str | None:
        """The answer to a chat command this runtime handles itself, or None."""
        word = commands.command_word(message.text)
        if word in ("/new", "/reset"):
            self._new_session(message.session_key)
            return "Started a new conversation."
        if word == "/status":
            session_id = self._session_id(message.session_key)
            count = self._session_db().message_count(session_id)
            return (f"agent: {self._home.spec.agent_id}\nmodel: {self._model(message.session_key)}"
                    f"\nsession: {session_id} ({message.session_key}, {count} messages)")
        if word == "/model":
            return self._switch_model(message)
        if word == "/memory":
            from tools.memory_tool import load_on_disk_store

            store = load_on_disk_store()  # reads memories/ under the workspace (HERMES_HOME)
            return commands.memory_reply(store.memory_entries, store.user_entries)
        if word == "/stop":
            return self._stop(message.session_key)
        if word == "/help":
            return commands.HELP
        if word in ("/undo", "/title"):
            handler = commands.undo if word == "/undo" else commands.title
            return handler(self._session_db(), self._session_id(message.session_key),
                           commands.argument(message.text))
        if word == "/retry" and not self._session_db().list_recent_user_messages(
                self._session_id(message.session_key), limit=1):
            return "Nothing to retry in this conversation."
        return None

    def _prompt(self, message: Deliver) -> str:
        """What the model is asked: the message, or what /retry or a skill's command stands
        for (the skill's instructions, loaded by hermes-agent as its gateway does)."""
        word = commands.command_word(message.text)
        if not word.startswith("/"):  # most messages: no lookup at all
            return message.text
        session_id = self._session_id(message.session_key)
        if word == "/retry":
            return commands.rewind_last(self._session_db(), session_id) or message.text
        if "skills" in self._toolsets:
            from agent.skill_commands import (
                build_skill_invocation_message,
                resolve_skill_command_key,
                scan_skill_commands,
            )

            scan_skill_commands()  # skills written since the last command count too
            key = resolve_skill_command_key(word[1:])
            if key is not None:
                return build_skill_invocation_message(
                    key, commands.argument(message.text), task_id=session_id) or message.text
        return message.text

    def _switch_model(self, message: Deliver) -> str:
        """Per session key, so one user's switch changes no one else's conversation; in
        memory only, so hermesd.toml stays the truth after a restart."""
        wanted, reply = commands.model_reply(self._model(message.session_key), self._default_model(),
                                             commands.argument(message.text))
        if wanted is not None:
            self._models[message.session_key] = wanted
            self._home.log("info", "model_switched", message.session_key, model=wanted)
        return reply

    def _stop(self, session_key: str) -> str:
        """Interrupt the session's running turn (its model call and tools) and kill the
        background processes the session's terminal tool started (filed under its session
        id, see _run)."""
        agent = self._running.get(session_key)
        if agent is None:
            return "Nothing is running in this conversation."
        agent.interrupt()
        from tools.process_registry import process_registry

        for process in process_registry.list_sessions(session_key=agent.session_id):
            if process["status"] == "running":
                process_registry.kill_process(process["session_id"], source="hermesd /stop")
        return "Stopping."


def _toolset(tool: str) -> str | None:
    """The hermes toolset a hermesd tool name enables: TOOLSETS, or the NAME of
    `hermes:NAME` (any other of hermes' toolsets, see hermesd.config.HERMES_TOOLSET)."""
    return TOOLSETS.get(tool) or (tool.removeprefix("hermes:") if tool.startswith("hermes:") else None)


def _agent(provider: dict[str, Any], toolsets: list[str], db: Any, session_id: str,
           session_key: str, max_iterations: int) -> Any:
    """An `AIAgent` as hermesd runs them: `provider` (base_url, api_key, provider, model...),
    no output of its own, the workspace's SOUL.md as its identity and no context files from
    the working directory."""
    from run_agent import AIAgent

    return AIAgent(**provider, enabled_toolsets=toolsets, quiet_mode=True, platform="hermesd",
                   session_id=session_id, session_db=db, gateway_session_key=session_key,
                   skip_context_files=True, load_soul_identity=True, max_iterations=max_iterations)


def _converse(agent: Any, text: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """One `run_conversation`, and the agent's clean-up whatever happens."""
    from gateway.session_context import declare_stateless_channel

    # nothing re-enters a conversation after its turn, so delegate_task runs its sub-agents
    # within the turn instead of "in the background" (this thread's context only)
    declare_stateless_channel()
    result: dict[str, Any] = {}
    try:
        # the task id is what the terminal tool files background processes under (as
        # their session_key): the session id, as in hermes' gateway, lets /stop find them
        result = agent.run_conversation(text, conversation_history=history, task_id=agent.session_id)
    finally:
        agent.shutdown_memory_provider(result.get("messages") or history)
        agent.close()
    return result


def preload() -> None:
    """In the zygote, before any fork: import hermes-agent and run one turn against a
    loopback endpoint, so that workers share its modules and what a first turn builds (the
    modules it imports late, the SDK's validators, tool schemas, caches) instead of each
    building them (a worker after its first turn: 33 MiB private without the turn here).
    An optimisation only: if it fails, workers import (or build) themselves what it did not
    (the zygote reports why in the log)."""
    from hermes_state import SessionDB

    with hermes_home.throwaway() as home:
        hermes_home.preimport()
        hermes_tools.register()
        db = SessionDB(db_path=home / hermes_home.SESSION_DB)
        try:
            with loopback.answering() as base_url:
                toolsets = [*TOOLSETS.values(), *ALWAYS]
                provider = {"base_url": base_url, "api_key": "none", "provider": "custom",
                            "model": "warm-up"}
                _converse(_agent(provider, toolsets, db, "warm-up", "local:warm-up", 2), "hi", [])
        finally:
            db.close()
            _stop_logging()


def _stop_logging() -> None:
    """Undo what the warm-up's `AIAgent` started: hermes' log files in the throw-away home
    and the thread that writes them.  A fork has no threads but the forking one, and each
    worker must log into its own workspace (its first `AIAgent` sets that up)."""
    import hermes_logging

    hermes_logging._reset_queued_handlers()  # hermes-agent's own reset, made for its tests
    hermes_logging._logging_initialized = False
