"""A small client for OpenAI-compatible chat completions (OpenRouter, Ollama, vLLM,
llama.cpp server...).

Workers are many and long-lived, so this is httpx + msgspec rather than a vendor SDK:
little memory, one dependency set, and typed decoding of only the fields we use.
Every failure becomes an `LLMError` that carries two texts: a short sentence fit for the
chat user, and the detail for the log.  The API key never appears in either.
"""

from __future__ import annotations

import random
import secrets
import ssl
from typing import Any

import anyio
import certifi
import httpx
import httpx._transports.default  # noqa: F401  (with httpcore and h11: loaded in the zygote)
import msgspec

from hermesd.protocol import LLMSpec

TLS = ssl.create_default_context(cafile=certifi.where())
"""One TLS context for every client, built at import: in the zygote, so workers share its
certificate store (about 1 MiB) instead of each loading its own."""

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_WAIT = 60.0
"""Longest pause between attempts, whatever the provider's Retry-After says: a chat
user is waiting on the other end."""


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str  # JSON text, as the API sends it


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: str  # system | user | assistant | tool
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Completion(msgspec.Struct):
    message: ChatMessage
    finish_reason: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)


class LLMError(Exception):
    """A failed completion.  `user_message` is a short sentence safe to show a chat user
    (no secrets, no URLs); `str(exc)` is the detail for logs; `retryable` says whether the
    same request may succeed later; `retry_after` is the provider's requested wait."""

    def __init__(self, user_message: str, detail: str | None = None, *, retryable: bool = False,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


# Wire shapes: looser than the public structs, because servers differ (a missing tool
# call id, arguments sent as an object, an error object inside a 200 answer).
class _WireFunction(msgspec.Struct):
    name: str = ""
    arguments: str | dict[str, Any] | None = None


class _WireToolCall(msgspec.Struct):
    function: _WireFunction
    id: str | None = None
    type: str = "function"


class _WireMessage(msgspec.Struct):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[_WireToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _WireMessage
    finish_reason: str | None = None


class _WireError(msgspec.Struct):
    message: str = ""
    code: int | str | None = None


class _Response(msgspec.Struct):
    choices: list[_Choice] = []
    usage: Usage | None = None
    error: _WireError | None = None


class _Request(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[ChatMessage]
    tools: list[dict[str, Any]] | None = None


_decoder = msgspec.json.Decoder(_Response)
_encoder = msgspec.json.Encoder()
_UNREADABLE = "The model's answer could not be read."


MISSING_KEY = "The model's API key is missing; please ask the operator to check it."
_api_key: str | None = None
_api_key_problem: str | None = None


def use_api_key(key: str | None, problem: str | None = None) -> None:
    """Set this worker's API key, as the daemon read it when it spawned the worker.  The
    worker reads no key itself: its environment holds no secrets, and key files may be
    root's.  `problem`: why a configured key could not be read."""
    global _api_key, _api_key_problem
    _api_key, _api_key_problem = key, problem


def api_key() -> tuple[str | None, str | None]:
    """This worker's API key and, when a configured one could not be read, why: for a
    runtime that calls its model through another client (hermes-agent's)."""
    return _api_key, _api_key_problem


def _status_error(status: int, text: str, retry_after: float | None = None) -> LLMError:
    """Map an HTTP status (or an error code inside the body) to what the user is told."""
    if status == 429:
        user = "The model provider is rate-limiting requests; please try again in a minute."
    elif status in (401, 403):
        user = "The model provider refused the API key."
    elif status == 404:
        user = "The model or the provider URL was not found."
    elif status == 408:
        user = "The model did not answer in time."
    elif status >= 500:
        user = "The model provider had an error."
    else:
        user = "The model provider rejected the request."
    return LLMError(user, f"HTTP {status}: {text[:500]}", retryable=status in RETRY_STATUSES,
                    status=status, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, capped; an HTTP date falls back to our backoff."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_WAIT) if seconds == seconds else None  # NaN


class LLMClient:
    """One connection pool to one provider; `complete` retries what can succeed later."""

    def __init__(self, spec: LLMSpec, *, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 1.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if _api_key_problem:  # an error now, not a 401 at the first message
            raise LLMError(MISSING_KEY, _api_key_problem)
        self._key = _api_key
        self._model = spec.model
        self._url = spec.base_url.rstrip("/") + "/chat/completions"
        self._max_retries = max_retries
        self._backoff = backoff
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._client = httpx.AsyncClient(headers=headers, transport=transport, verify=TLS,
                                         timeout=httpx.Timeout(timeout, connect=10.0))

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, messages: list[ChatMessage],
                       tools: list[dict] | None = None) -> Completion:
        """One assistant message for `messages`, retrying transient failures with
        exponential backoff and jitter (or the provider's Retry-After)."""
        body = _encoder.encode(_Request(self._model, messages, tools or None))
        for attempt in range(self._max_retries + 1):
            try:
                return await self._attempt(body)
            except LLMError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
                wait = exc.retry_after
                if wait is None:
                    wait = self._backoff * 2**attempt * random.uniform(0.5, 1.0)
                await anyio.sleep(min(wait, MAX_WAIT))
        raise AssertionError("unreachable")

    async def _attempt(self, body: bytes) -> Completion:
        try:
            response = await self._client.post(self._url, content=body)
        except httpx.ConnectTimeout as exc:
            raise self._error("The model provider could not be reached.", exc, True) from None
        except httpx.TimeoutException as exc:
            raise self._error("The model did not answer in time.", exc, True) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise self._error("The model provider could not be reached.", exc, True) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._error("The model provider could not be reached.", exc, False) from None
        if response.status_code >= 400:
            wait = None
            if response.status_code in (429, 503):
                wait = _retry_after(response.headers.get("Retry-After"))
            raise self._redact(_status_error(response.status_code, response.text, wait))
        try:
            decoded = _decoder.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self._redact(LLMError(_UNREADABLE, f"{exc}: {response.text[:200]!r}")) from None
        if decoded.error is not None:
            code = decoded.error.code if isinstance(decoded.error.code, int) else 500
            raise self._redact(_status_error(code, f"error in body: {decoded.error.message}"))
        if not decoded.choices:
            raise self._redact(LLMError(_UNREADABLE, f"no choices: {response.text[:200]!r}"))
        choice = decoded.choices[0]
        return Completion(_convert(choice.message), choice.finish_reason, decoded.usage or Usage())

    def _error(self, user: str, exc: Exception, retryable: bool) -> LLMError:
        detail = f"{type(exc).__name__} for {self._url}: {exc}"
        return self._redact(LLMError(user, detail, retryable=retryable))

    def _redact(self, error: LLMError) -> LLMError:
        """Belt and braces: some providers echo (part of) a refused key in their body."""
        if self._key and self._key in str(error):
            error.args = (str(error).replace(self._key, "***"),)
        return error


def _convert(wire: _WireMessage) -> ChatMessage:
    """Normalise a server's message: every tool call gets an id and JSON-text arguments."""
    calls = None
    if wire.tool_calls:
        calls = []
        for call in wire.tool_calls:
            arguments = call.function.arguments
            if not isinstance(arguments, str):
                arguments = _encoder.encode(arguments or {}).decode()
            calls.append(ToolCall(call.id or f"call_{secrets.token_hex(8)}", FunctionCall(
                call.function.name, arguments), call.type or "function"))
    return ChatMessage(wire.role or "assistant", wire.content, calls)


def warm_up() -> None:
    """One real request to a throw-away loopback endpoint, in the zygote: every worker then
    shares what httpx, httpcore and h11 build and specialise on first use, instead of each
    copying those pages at its first turn (about 2 MiB per worker)."""
    from workers import loopback

    async def ask(base_url: str) -> None:
        with anyio.fail_after(5):
            async with LLMClient(LLMSpec(base_url=base_url, model="warm-up"), max_retries=0) as client:
                await client.complete([ChatMessage(role="user", content="hi")])

    with loopback.answering() as base_url:
        anyio.run(ask, base_url)
