"""What an agent may ask of the parent besides carrying its replies: a question to another
agent (send_to_agent), and a message in one of its own conversations (a cron job firing)."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from hermesd import protocol

ASK_TIMEOUT = 300.0  # an asked agent may itself call a model and tools


class Parent:
    def __init__(self, send: Callable[[protocol.WorkerFrame], None]) -> None:
        self._send = send
        self._waiting: dict[str, tuple[anyio.Event, list[protocol.Answer]]] = {}

    async def ask(self, request_id: str, to: str, text: str, depth: int) -> protocol.Answer:
        event, answers = self._waiting.setdefault(request_id, (anyio.Event(), []))
        self._send(protocol.Ask(request_id=request_id, to=to, text=text, depth=depth))
        try:
            with anyio.fail_after(ASK_TIMEOUT):
                await event.wait()
        except TimeoutError:
            return protocol.Answer(request_id=request_id, error=f"{to} did not answer in time")
        finally:
            del self._waiting[request_id]
        return answers[0]

    def answered(self, answer: protocol.Answer) -> None:
        waiting = self._waiting.get(answer.request_id)
        if waiting is not None and not waiting[0].is_set():
            waiting[1].append(answer)
            waiting[0].set()

    def inject(self, external_id: str, platform: str, session_key: str, text: str) -> None:
        self._send(protocol.Inject(external_id=external_id, platform=platform,
                                   session_key=session_key, text=text))
