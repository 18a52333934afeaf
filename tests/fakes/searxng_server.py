"""A fake SearXNG (the self-hosted metasearch engine hermes-agent's web_search can use):
`GET /search?q=...&format=json` answers one result naming the query, and records each
query, so a test runs hermes' web search end to end without leaving 127.0.0.1."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

from tests.fakes._threaded import QuietHandler, QuietServer, ThreadedServer


class _Server(QuietServer):
    queries: list[str]
    lock: threading.Lock


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        if url.path != "/search" or params.get("format") != ["json"]:
            self._send(404, {"error": f"unknown request {self.path}"})
            return
        query = params.get("q", [""])[0]
        with self.server.lock:
            self.server.queries.append(query)
        result = {"title": f"Result for {query}", "url": "https://example.org/found",
                  "content": f"what the web says about {query}", "score": 1.0}
        self._send(200, {"query": query, "results": [result]})

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeSearXNG(ThreadedServer):
    """The fake in a background thread; `start()` returns its base URL (SEARXNG_URL)."""

    def __init__(self) -> None:
        self.url = ""  # "http://127.0.0.1:PORT" once started
        self._queries: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.queries, server.lock = self._queries, self._lock
        self.url = f"http://127.0.0.1:{self._run(server, 'fake-searxng')}"
        return self.url

    def queries(self) -> list[str]:
        with self._lock:
            return list(self._queries)
