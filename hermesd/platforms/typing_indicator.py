""""typing…" while an agent works: re-sent before the platform's indicator fades, until
the message is finished or a ceiling is reached (a stuck turn should not type forever).
The first one waits a moment: a quick answer needs no indicator, and each one is an API
call as expensive as the answer itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from hermesd import log


class TypingIndicator:
    def __init__(self, send: Callable[[str], Awaitable[None]], every: float, at_most: float = 120.0,
                 first_after: float = 1.0) -> None:
        self._send = send  # one indicator for a session key; failures are only logged
        self._every = every
        self._first_after = first_after
        self._at_most = at_most
        self._scopes: dict[str, anyio.CancelScope] = {}

    def start(self, tasks: TaskGroup, session_key: str) -> None:
        if session_key not in self._scopes:
            scope = anyio.CancelScope(deadline=anyio.current_time() + self._at_most)
            self._scopes[session_key] = scope
            tasks.start_soon(self._run, session_key, scope)

    def stop(self, session_key: str) -> None:
        scope = self._scopes.pop(session_key, None)
        if scope is not None:
            scope.cancel()

    async def _run(self, session_key: str, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(self._first_after)
            while True:
                try:
                    await self._send(session_key)
                except Exception as exc:  # a courtesy: never worth failing over
                    log.debug("typing_failed", session=session_key, error=str(exc))
                await anyio.sleep(self._every)
        if self._scopes.get(session_key) is scope:
            del self._scopes[session_key]
