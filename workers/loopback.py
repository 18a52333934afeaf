"""A throw-away OpenAI-compatible endpoint on 127.0.0.1, for the zygote's warm-ups.

The zygote runs each LLM client once before any fork (workers.llm.warm_up, and the
hermes runtime's `preload`): what a client builds and specialises on first use then lands
in pages every worker shares instead of in each worker's copy.  Those warm-ups need
something to answer them that is neither a real provider nor the network: this.

It serves from a thread with blocking sockets, one request per connection, and is gone
(thread joined, socket closed) when the `with` block ends: the zygote forks right after,
and a fork must not inherit a thread that was mid-way through something.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

ANSWER = "ok"

_COMPLETION = {"id": "warm-up", "object": "chat.completion", "created": 0, "model": "warm-up",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": ANSWER}}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
_CHUNKS = [{"id": "warm-up", "object": "chat.completion.chunk", "created": 0, "model": "warm-up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
           for delta, finish in (({"role": "assistant", "content": ANSWER}, None), ({}, "stop"))]


@contextmanager
def answering() -> Iterator[str]:
    """An endpoint answering every chat completion with ANSWER (as server-sent events when
    the request asks to stream); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # how often the serving thread looks at `done`
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                try:
                    _answer(connection)
                except OSError:
                    continue  # the client gave up: nothing to warm there

    thread = threading.Thread(target=serve, name="hermesd-loopback")
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        done.set()
        thread.join()
        listener.close()


def _answer(connection: socket.socket) -> None:
    """Just enough HTTP/1.1: read one request, send one answer, close."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = connection.recv(65536)
        if not data:
            return
        request += data
    head, _, body = request.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: *(\d+)", head, re.I)
    while length and len(body) < int(length[1]):
        data = connection.recv(65536)
        if not data:
            return
        body += data
    if b'"stream": true' in body or b'"stream":true' in body:
        kind = b"text/event-stream"
        payload = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in _CHUNKS)
        payload += b"data: [DONE]\n\n"
    else:
        kind, payload = b"application/json", json.dumps(_COMPLETION).encode()
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                       b"Connection: close\r\n\r\n%s" % (kind, len(payload), payload))
