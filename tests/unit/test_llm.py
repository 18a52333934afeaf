"""The LLM client against a scripted transport: what it sends, what it decodes, what it
retries, and what it tells the user when it gives up."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from hermesd.protocol import LLMSpec
from workers.llm import (
    MISSING_KEY,
    ChatMessage,
    FunctionCall,
    LLMClient,
    LLMError,
    ToolCall,
    use_api_key,
)

KEY = "sk-test-secret-123"
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def with_key() -> Iterator[None]:
    """The worker was given KEY by the daemon."""
    use_api_key(KEY)
    yield
    use_api_key(None)


def answer(content: str = "hello", **extra: object) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, **extra})


class Script:
    """A transport that records requests and plays back responses (or raises) in order."""

    def __init__(self, *steps: httpx.Response | Exception | Callable[[], httpx.Response]) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step() if callable(step) else step

    def client(self, spec: LLMSpec | None = None, **kwargs: object) -> LLMClient:
        spec = spec or LLMSpec(base_url="http://llm.test/v1", model="m")
        kwargs.setdefault("backoff", 0.01)
        return LLMClient(spec, transport=httpx.MockTransport(self), **kwargs)  # type: ignore[arg-type]


async def run(script: Script, spec: LLMSpec | None = None, tools: list[dict] | None = None,
              **kwargs: object):  # type: ignore[no-untyped-def]
    async with script.client(spec, **kwargs) as client:
        return await client.complete([ChatMessage("user", "hi")], tools)


@pytest.mark.anyio
async def test_request_shape_with_key_and_tools(with_key: None) -> None:
    script = Script(answer())
    spec = LLMSpec(base_url="http://llm.test/v1/", model="gpt-x", api_key_env="TEST_LLM_KEY")
    async with script.client(spec) as client:
        result = await client.complete(
            [ChatMessage("system", "be brief"), ChatMessage("user", "hi")], TOOLS)
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "tools": TOOLS,
    }
    assert result.message == ChatMessage("assistant", "hello")
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (5, 7)


@pytest.mark.anyio
async def test_no_key_no_header_no_tools() -> None:
    script = Script(answer())
    await run(script, LLMSpec(base_url="http://localhost:11434/v1", model="llama"))
    (request,) = script.requests
    assert str(request.url) == "http://localhost:11434/v1/chat/completions"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "model": "llama", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.anyio
async def test_tool_calls_are_decoded_and_sent_back() -> None:
    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "get_time", "arguments": "{\"tz\": \"UTC\"}"}},
             {"function": {"name": "other", "arguments": {"a": 1}}}]  # lax server
    script = Script(
        httpx.Response(200, json={"choices": [{"message": {
            "role": "assistant", "content": None, "tool_calls": calls},
            "finish_reason": "tool_calls"}]}),
        answer("it is noon"))
    async with script.client() as client:
        first = await client.complete([ChatMessage("user", "time?")], TOOLS)
        assert first.finish_reason == "tool_calls"
        assert first.usage.total_tokens == 0
        assert first.message.tool_calls is not None and len(first.message.tool_calls) == 2
        assert first.message.tool_calls[0] == ToolCall(
            "call_1", FunctionCall("get_time", '{"tz": "UTC"}'))
        assert first.message.tool_calls[1].function == FunctionCall("other", '{"a":1}')
        assert first.message.tool_calls[1].id not in ("", "call_1")  # filled in, unique
        history = [ChatMessage("user", "time?"), first.message,
                   ChatMessage("tool", "12:00", tool_call_id="call_1", name="get_time")]
        second = await client.complete(history, TOOLS)
    assert second.message.content == "it is noon"
    sent = json.loads(script.requests[1].content)["messages"]
    assert sent[1]["tool_calls"][0] == calls[0]
    assert "content" not in sent[1]
    assert sent[2] == {"role": "tool", "content": "12:00", "tool_call_id": "call_1",
                       "name": "get_time"}


@pytest.mark.anyio
async def test_retries_server_error_then_succeeds() -> None:
    script = Script(httpx.Response(500, text="boom"), httpx.ConnectError("refused"),
                    httpx.Response(502), answer("finally"))
    result = await run(script)
    assert result.message.content == "finally"
    assert len(script.requests) == 4


@pytest.mark.anyio
async def test_gives_up_after_max_retries() -> None:
    script = Script(*[httpx.Response(503, text="down")] * 3)
    with pytest.raises(LLMError) as caught:
        await run(script, max_retries=2)
    assert len(script.requests) == 3
    assert caught.value.retryable and caught.value.status == 503
    assert caught.value.user_message == "The model provider had an error."
    assert "503" in str(caught.value) and "down" in str(caught.value)


@pytest.mark.anyio
async def test_429_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("workers.llm.anyio.sleep", fake_sleep)
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}),
                    httpx.Response(429, headers={"Retry-After": "3600"}),
                    httpx.Response(429), answer())
    await run(script)
    assert waits[:2] == [7.0, 60.0]  # honoured, then capped
    assert 0 < waits[2] <= 0.04  # no header: backoff with jitter (0.01 * 2**2)


@pytest.mark.anyio
async def test_429_user_message_when_exhausted() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "0"}))
    with pytest.raises(LLMError) as caught:
        await run(script, max_retries=0)
    assert "rate-limiting" in caught.value.user_message


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "words"), [
    (401, "refused the API key"), (403, "refused the API key"),
    (404, "not found"), (400, "rejected")])
async def test_client_errors_are_not_retried(status: int, words: str, with_key: None) -> None:
    spec = LLMSpec(base_url="http://llm.test", model="m", api_key_env="TEST_LLM_KEY")
    script = Script(httpx.Response(status, text=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMError) as caught:
        await run(script, spec)
    assert len(script.requests) == 1
    assert not caught.value.retryable
    assert words in caught.value.user_message
    assert KEY not in str(caught.value) and KEY not in caught.value.user_message


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"{}", b'{"choices": []}',
                                  b'{"choices": [{"finish_reason": "stop"}]}', b"[1, 2]"])
async def test_unreadable_answer_is_not_retried(body: bytes) -> None:
    script = Script(httpx.Response(200, content=body), answer())
    with pytest.raises(LLMError) as caught:
        await run(script)
    assert len(script.requests) == 1
    assert not caught.value.retryable
    assert caught.value.user_message == "The model's answer could not be read."
    assert str(caught.value) != caught.value.user_message  # the detail is for the log


@pytest.mark.anyio
async def test_error_object_in_a_200_answer() -> None:
    script = Script(httpx.Response(200, json={"error": {"message": "upstream died", "code": 502}}),
                    answer("ok"))
    assert (await run(script)).message.content == "ok"
    script = Script(httpx.Response(200, json={"error": {"message": "bad tools", "code": 400}}))
    with pytest.raises(LLMError, match="bad tools"):
        await run(script)


@pytest.mark.anyio
async def test_timeout_reports_a_timeout() -> None:
    script = Script(*[httpx.ReadTimeout("slow")] * 2)
    with pytest.raises(LLMError) as caught:
        await run(script, max_retries=1)
    assert len(script.requests) == 2
    assert caught.value.retryable
    assert caught.value.user_message == "The model did not answer in time."
    assert "ReadTimeout" in str(caught.value)


def test_client_refuses_to_start_without_a_configured_key() -> None:
    use_api_key(None, "environment variable TEST_LLM_KEY is not set or empty")
    try:
        with pytest.raises(LLMError, match="TEST_LLM_KEY") as caught:
            LLMClient(LLMSpec(base_url="u", model="m", api_key_env="TEST_LLM_KEY"))
    finally:
        use_api_key(None)
    assert not caught.value.retryable and caught.value.user_message == MISSING_KEY
