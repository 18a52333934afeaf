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
            "files": "file", "terminal": "terminal",
            "cron": "cronjob", **hermes_tools.TOOLSETS}
"""hermesd tool names (`tools` in hermesd.toml) and the hermes toolsets they enable.
`files` and `terminal` run in the worker's process, so its sandbox (workers/landlock.py)
is what confines them to the workspace and the shared paths.  `cron` is hermes' cronjob
tool (jobs in the workspace's cron/jobs.json, run by workers.hermes_cron);
`send_to_agent` and `send_file` are hermesd's own (workers.runtimes.hermes_tools)."""

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
        if home.spec.llm is None:
            raise RuntimeError("runtime hermes needs an llm provider")
        if importlib.util.find_spec("run_agent") is None:  # said in `hermesctl status`
            raise RuntimeError("runtime hermes needs hermes-agent: install hermesd[hermes]")
        self._home = home
        self._root = home.workspace.root
        self._llm: LLMSpec = home.spec.llm
        hermes_home.enter(self._root)  # before hermes-agent is first imported here
        self._db: Any = None  # hermes_state.SessionDB, opened at the first turn
        home.state.db.executescript(SCHEMA)
        home.scheduler = hermes_cron.HermesCron(home)  # also runs the profile's cron/jobs.json
        hermes_tools.register()
        self._toolsets = [TOOLSETS[name] for name in home.spec.tools if name in TOOLSETS]
        self._toolsets += ALWAYS
        self._models: dict[str, str] = {}  # per session key, set by /model
        self._running: dict[str, Any] = {}  # session key -> its turn's AIAgent, for /stop

    async def turn(self, message: Deliver) -> AsyncIterator[Say]:
        answer = self._command(message)
        if answer is not None:
            yield Say(answer)
            return
        problem = llm.api_key()[1]
        if problem:
            self._home.log("error", "llm_failed", message.session_key, error=problem)
            yield Say(f"⚠️ {llm.MISSING_KEY}")
            return
        context = self._home.tool_context(message, 0)  # 0: hermes keeps its own sessions
        try:
            result = await anyio.to_thread.run_sync(self._run, message, hermes_tools.Turn.here(context))
        except Exception as exc:
            result = {"failed": True, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._home.scheduler.changed()  # the turn may have made a cron job
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

    def _run(self, message: Deliver, turn: hermes_tools.Turn) -> dict[str, Any]:
        """One hermes turn, in a worker thread."""
        db = self._session_db()
        session_id = self._session_id(message.session_key)
        hermes_tools.bind(turn)
        history = db.get_messages_as_conversation(session_id, repair_alternation=True)
        agent = _agent(self._llm.base_url, llm.api_key()[0] or "none", self._model(message.session_key),
                       self._toolsets, db, session_id, message.session_key,
                       self._home.spec.max_tool_steps)
        self._running[message.session_key] = agent
        try:
            return _converse(agent, message.text, history)
        finally:
            del self._running[message.session_key]

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

    def _model(self, session_key: str) -> str:
        return self._models.get(session_key, self._llm.model)

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
        return None

    def _switch_model(self, message: Deliver) -> str:
        """Per session key, so one user's switch changes no one else's conversation; in
        memory only, so hermesd.toml stays the truth after a restart."""
        wanted, reply = commands.model_reply(self._model(message.session_key), self._llm.model,
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


def _agent(base_url: str, api_key: str, model: str, toolsets: list[str], db: Any,
           session_id: str, session_key: str, max_iterations: int) -> Any:
    """An `AIAgent` as hermesd runs them: a custom (OpenAI-compatible) provider, no output
    of its own, the workspace's SOUL.md as its identity and no context files from the
    working directory."""
    from run_agent import AIAgent

    return AIAgent(base_url=base_url, api_key=api_key, provider="custom", model=model,
                   enabled_toolsets=toolsets, quiet_mode=True, platform="hermesd",
                   session_id=session_id, session_db=db, gateway_session_key=session_key,
                   skip_context_files=True, load_soul_identity=True, max_iterations=max_iterations)


def _converse(agent: Any, text: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """One `run_conversation`, and the agent's clean-up whatever happens."""
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
    An optimisation only: if it fails, each worker imports hermes-agent itself."""
    from hermes_state import SessionDB

    with hermes_home.throwaway() as home:
        hermes_home.preimport()
        hermes_tools.register()
        db = SessionDB(db_path=home / hermes_home.SESSION_DB)
        try:
            with loopback.answering() as base_url:
                toolsets = [*TOOLSETS.values(), *ALWAYS]
                _converse(_agent(base_url, "none", "warm-up", toolsets, db, "warm-up", "local:warm-up", 2),
                          "hi", [])
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
