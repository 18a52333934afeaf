"""The fake OpenAI server behaves like the API where agents look, so agent tests can trust it."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI

SCRIPT = Path(__file__).resolve().parents[1] / "fakes" / "openai_server.py"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url.removesuffix("/v1"), timeout=5) as http:
        yield http


def chat(client: httpx.Client, text: str = "hello there", model: str = "m", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": text}], **extra}
    return client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-test"})


def push(client: httpx.Client, model: str, *steps: dict[str, Any]) -> None:
    response = client.post("/_script", json={"model": model, "steps": list(steps)})
    assert response.status_code == 200, response.text


def test_default_reply_has_openai_shape(client: httpx.Client) -> None:
    response = chat(client, "hello there", model="gpt-x")
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "gpt-x"
    assert data["id"] and isinstance(data["created"], int)
    [choice] = data["choices"]
    assert choice == {"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "fake: hello there"}}
    usage = data["usage"]
    assert usage["prompt_tokens"] == 4 and usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_scripts_are_per_model_with_a_shared_fallback(client: httpx.Client) -> None:
    push(client, "a", {"reply": "a1"}, {"reply": "a2"})
    push(client, "*", {"reply": "any"})
    assert chat(client, model="b").json()["choices"][0]["message"]["content"] == "any"
    replies = [chat(client, "x", model="a").json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert replies == ["a1", "a2", "fake: x"]


def test_tool_calls_look_like_openai(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.script("m", {"tool_calls": [{"name": "memory", "arguments": {"op": "add", "text": "hi"}},
                                     {"name": "clock", "arguments": "{}"}]},
                {"tool_calls": [{"name": "memory"}]})
    choice = chat(client, tools=[{"type": "function", "function": {"name": "memory"}}]).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    first, second = message["tool_calls"]
    assert first == {"id": "call_1", "type": "function",
                     "function": {"name": "memory", "arguments": json.dumps({"op": "add", "text": "hi"})}}
    assert second["id"] == "call_2" and second["function"]["arguments"] == "{}"
    later = chat(client).json()["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in later] == ["call_3"]  # unique across the conversation


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limit_exceeded"), (401, "invalid_api_key"), (500, None)])
def test_error_steps(client: httpx.Client, status: int, code: str | None) -> None:
    push(client, "m", {"status": status, "retry_after": 1} if status == 429 else {"status": status})
    response = chat(client)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert response.headers.get("retry-after") == ("1" if status == 429 else None)
    assert chat(client).status_code == 200  # one step, one failure


def test_garbage_is_a_200_that_is_not_json(client: httpx.Client) -> None:
    push(client, "m", {"garbage": True})
    response = chat(client)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_echo_system_shows_the_prompt(client: httpx.Client) -> None:
    push(client, "m", {"echo_system": True})
    assert chat(client).json()["choices"][0]["message"]["content"] == "be brief"


def test_delay_times_out_a_client_and_the_server_carries_on(client: httpx.Client) -> None:
    push(client, "m", {"delay": 0.3, "reply": "late"})
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "m", "messages": []}, timeout=0.1)
    assert chat(client).json()["choices"][0]["message"]["content"] == "fake: hello there"


def test_requests_are_recorded_filterable_and_reset(fake: FakeOpenAI, client: httpx.Client) -> None:
    chat(client, "one", model="a", tool_choice="auto")
    chat(client, "two", model="b")
    assert [m["id"] for m in client.get("/v1/models").json()["data"]]
    everything = client.get("/_requests").json()
    assert [r["path"] for r in everything] == ["/v1/chat/completions"] * 2 + ["/v1/models"]
    [only_a] = client.get("/_requests", params={"model": "a"}).json()
    assert only_a["headers"]["authorization"] == "Bearer sk-test"
    assert only_a["body"]["tool_choice"] == "auto" and only_a["body"]["messages"][1]["content"] == "one"
    assert isinstance(only_a["time"], float)
    assert fake.requests("b")[0]["body"]["model"] == "b"
    push(client, "a", {"reply": "scripted"})
    assert client.post("/_reset").status_code == 200
    assert client.get("/_requests").json() == []
    assert chat(client, "x", model="a").json()["choices"][0]["message"]["content"] == "fake: x"


def test_bad_scripts_are_refused(client: httpx.Client) -> None:
    assert client.post("/_script", json={"model": "m", "steps": [{"replay": "typo"}]}).status_code == 400
    assert client.post("/_script", json={"model": "m"}).status_code == 400
    assert chat(client).json()["choices"][0]["message"]["content"] == "fake: hello there"


def test_runs_as_a_script_and_prints_only_the_listening_line() -> None:
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 5)
        assert ready, "no listening line within 5 s"
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "fake: hi"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=5)
    assert process.returncode == 0 and out == "" and err == ""
