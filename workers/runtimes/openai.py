"""The openai runtime: an OpenAI-compatible model with tools, over this agent's workspace.

One turn: the user's message goes into the session, the model is called with the system
prompt, the trimmed history and the tool definitions; tool calls are run and their
results fed back, up to `max_tool_steps` times; the final text is the reply.  Everything
said is stored as it happens, so a failed call loses nothing the user wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hermesd.protocol import Deliver
from workers import commands, tools
from workers.llm import ChatMessage, LLMClient, LLMError
from workers.prompt import system_prompt
from workers.runtimes.home import AgentHome, Say


class OpenAIRuntime:
    def __init__(self, home: AgentHome) -> None:
        if home.spec.llm is None:
            raise RuntimeError("runtime openai needs an llm provider")
        self._home = home
        self._client: LLMClient | None = None  # created at the first turn: idle agents stay small
        self._tools = tools.definitions(home.spec.tools)

    def _llm(self) -> LLMClient:
        if self._client is None:
            llm = self._home.spec.llm
            assert llm is not None
            self._client = LLMClient(llm, timeout=llm.timeout, max_retries=llm.max_retries)
        return self._client

    async def turn(self, message: Deliver) -> AsyncIterator[Say]:
        home = self._home
        answer = commands.handle(message, home.spec, home.sessions)
        if answer is not None:
            yield Say(answer)
            return
        session_id = home.sessions.current(message.session_key)
        home.sessions.forget_attempt(session_id, message.msg_id)
        history, trimmed = home.sessions.history(session_id, home.spec.history_budget)
        user = ChatMessage(role="user", content=message.text)
        home.sessions.append(session_id, user, message.msg_id)
        system = ChatMessage(role="system",
                             content=system_prompt(home.spec, home.workspace, message, trimmed))
        conversation = [system, *history, user]
        context = home.tool_context(message, session_id)
        for _step in range(home.spec.max_tool_steps):
            try:
                completion = await self._llm().complete(conversation, self._tools or None)
            except LLMError as exc:
                home.log("error", "llm_failed", message.session_key, error=str(exc))
                yield Say(f"⚠️ {exc.user_message}")
                return
            home.sessions.add_usage(session_id, completion.usage)
            reply = completion.message
            home.sessions.append(session_id, reply, message.msg_id)
            conversation.append(reply)
            if not reply.tool_calls:
                yield Say(reply.content or ("" if context.files else "(no answer)"), tuple(context.files))
                return
            for call in reply.tool_calls:
                result = await tools.call(call.function.name, call.function.arguments, context)
                outcome = ChatMessage(role="tool", tool_call_id=call.id, name=call.function.name,
                                      content=result)
                home.sessions.append(session_id, outcome, message.msg_id)
                conversation.append(outcome)
        yield Say(f"(stopped after {home.spec.max_tool_steps} tool steps without a final answer)",
                  tuple(context.files))
