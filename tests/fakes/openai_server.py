"""A scriptable fake of OpenAI's chat-completions API, so tests never need a real model.

Real HTTP on 127.0.0.1 (stdlib only) so agents exercise their true client path: headers,
status codes, timeouts. Steps queue per model name (``"*"`` is the fallback) so agents with
different ``model`` values get independent scripts. In-process: ``with FakeOpenAI() as fake``;
as a process: ``python tests/fakes/openai_server.py [--port N]`` prints the listening line.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:
    from tests.fakes._threaded import QuietHandler, QuietServer, ThreadedServer
except ModuleNotFoundError:  # run by hand as a script: this directory is on sys.path
    from _threaded import QuietHandler, QuietServer, ThreadedServer  # type: ignore[no-redef]

Step = dict[str, Any]
MODELS = ("fake-model", "fake-model-2")  # what GET /v1/models lists; any model name is accepted
STEP_KEYS = {"reply", "tool_calls", "status", "retry_after", "garbage", "delay", "echo_system"}
ERRORS = {401: ("invalid_request_error", "invalid_api_key"),  # status -> OpenAI's (type, code)
          429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None)}


def _text(content: Any) -> str:
    """Flatten message content, which may be a string or a list of content parts."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code = ERRORS.get(status, ("invalid_request_error", None))
    return {"error": {"message": message or f"fake {status}", "type": kind, "param": None, "code": code}}


class _State:
    """Scripts and recorded requests; one lock because handlers run on many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.scripts: dict[str, deque[Step]] = {}
            self.records: list[dict[str, Any]] = []
            self.tool_calls = 0  # ids run call_1, call_2, ... until the next reset

    def push(self, model: str, steps: Any) -> None:
        if not isinstance(steps, list):
            raise TypeError('expected {"model": ..., "steps": [...]}')
        for step in steps:  # reject typos loudly instead of silently replying by default
            if not isinstance(step, dict) or not set(step) <= STEP_KEYS:
                raise TypeError(f"bad step {step!r}; keys allowed: {sorted(STEP_KEYS)}")
        with self.lock:
            self.scripts.setdefault(model, deque()).extend(steps)

    def next_step(self, model: str) -> Step:
        with self.lock:
            for name in (model, "*"):
                if self.scripts.get(name):
                    return self.scripts[name].popleft()
        return {}

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self.lock:
            self.records.append({"path": path, "headers": headers, "body": body, "time": time.time()})

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records
                    if model is None or (isinstance(r["body"], dict) and r["body"].get("model") == model)]

    def completion(self, body: dict[str, Any], step: Step) -> dict[str, Any]:
        """Build an OpenAI-shaped chat.completion for one request and its scripted step."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if step.get("echo_system"):  # lets a test read, through the chat, the prompt an agent built
            content: str | None = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
        elif "reply" in step:
            content = step["reply"]
        elif "tool_calls" in step:
            content = None  # OpenAI sends null content alongside tool calls
        else:
            users = [m for m in messages if m.get("role") == "user"]
            content = "fake: " + (_text(users[-1].get("content")) if users else "")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        calls = step.get("tool_calls") or []
        with self.lock:  # the id only needs to be unique, and this request was recorded first
            serial, first_call = len(self.records), self.tool_calls + 1
            self.tool_calls += len(calls)
        if calls:  # OpenAI sends arguments as a JSON-encoded string, not an object
            message["tool_calls"] = [{"id": f"call_{n}", "type": "function", "function": {
                "name": call["name"], "arguments": args if isinstance(args := call.get("arguments", {}), str)
                else json.dumps(args)}} for n, call in enumerate(calls, first_call)]
        prompt = sum(len(_text(m.get("content")).split()) for m in messages)  # tokens ~ words: enough
        produced = [content or ""] + [c["function"]["arguments"] for c in message.get("tool_calls", [])]
        answer = len(" ".join(produced).split())
        return {
            "id": f"chatcmpl-fake{serial}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer},
        }


class _Server(QuietServer):
    state: _State


class _Handler(QuietHandler):
    server: _Server

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> tuple[bool, Any]:
        """(parsed?, body): unparsable bodies are still recorded, as text, for debugging."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return True, json.loads(raw) if raw else None
        except ValueError:
            return False, raw.decode(errors="replace")

    def do_GET(self) -> None:
        """Both methods share one router: the path decides, the method only disambiguates."""
        state, url = self.server.state, urlsplit(self.path)
        ok, body = self._body()
        if url.path.startswith("/v1/"):  # header names lower-cased so lookups are predictable
            state.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        route = (self.command, url.path)
        if route == ("POST", "/v1/chat/completions"):
            if ok and isinstance(body, dict):
                self._complete(body, state.next_step(str(body.get("model", ""))))
            else:
                self._send(400, _error_body(400, "We could not parse the JSON body of your request."))
        elif route == ("GET", "/v1/models"):
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
            self._send(200, {"object": "list", "data": models})
        elif route == ("GET", "/_requests"):
            self._send(200, state.requests(parse_qs(url.query).get("model", [None])[0]))
        elif route == ("POST", "/_script"):
            body = body if isinstance(body, dict) else {}
            try:
                state.push(str(body.get("model", "*")), body.get("steps"))
                self._send(200, {"queued": len(body["steps"])})
            except TypeError as exc:
                self._send(400, _error_body(400, str(exc)))
        elif route == ("POST", "/_reset"):
            state.reset()
            self._send(200, {"reset": True})
        else:
            self._send(404, _error_body(404, f"Unknown request URL: {self.command} {url.path}"))

    do_POST = do_GET

    def _complete(self, body: dict[str, Any], step: Step) -> None:
        if step.get("delay"):
            time.sleep(float(step["delay"]))
        if "status" in step:
            status = int(step["status"])
            extra = {"Retry-After": f"{step['retry_after']:g}"} if "retry_after" in step else None
            self._send(status, _error_body(status), extra)
        elif step.get("garbage"):
            self._send(200, b"<html>502 Bad Gateway</html> this is not JSON {")
        elif body.get("stream"):
            self._stream(self.server.state.completion(body, step))
        else:
            self._send(200, self.server.state.completion(body, step))

    def _stream(self, completion: dict[str, Any]) -> None:
        """The same answer as server-sent events, for clients that ask `"stream": true`
        (hermes-agent does): the whole message in one delta, then the finish and usage."""
        choice = completion["choices"][0]
        delta = dict(choice["message"])
        if "tool_calls" in delta:  # chunks number their tool calls
            delta["tool_calls"] = [{"index": n, **call} for n, call in enumerate(delta["tool_calls"])]
        base = {key: completion[key] for key in ("id", "created", "model")}
        chunks = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                  {**base, "object": "chat.completion.chunk", "usage": completion["usage"],
                   "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}]
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
        self._send(200, data + b"data: [DONE]\n\n", {"Content-Type": "text/event-stream"})


class FakeOpenAI(ThreadedServer):
    """The fake server in a background thread; ``start()`` returns the ``/v1`` base URL."""

    def __init__(self, port: int = 0) -> None:
        self.port, self.url = port, ""  # url becomes "http://127.0.0.1:PORT/v1" once started
        self.state = _State()

    def start(self) -> str:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.state = self.state
        self.port = self._run(server, "fake-openai")
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self.url

    # Shortcuts to what /_script, /_requests and /_reset do, for in-process tests.
    def script(self, model: str, *steps: Step) -> None:
        self.state.push(model, list(steps))

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        return self.state.requests(model)

    def reset(self) -> None:
        self.state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI chat-completions server for tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before start(), so server threads inherit it
    fake = FakeOpenAI(parser.parse_args(argv).port)
    print(f"listening on {fake.start().removesuffix('/v1')}", flush=True)  # tests parse this line
    signal.sigwait(stops)  # Ctrl-C and SIGTERM both end here, for a clean shutdown
    fake.stop()


if __name__ == "__main__":
    main()
