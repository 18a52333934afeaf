"""What the HTTP fakes share: a quiet ThreadingHTTPServer and handler, run in a background
thread, stopped quickly, usable as a context manager."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler sleeping or long-polling must not block stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that gave up and hung up: timeout tests do that on purpose."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs, so client pools behave
    disable_nagle_algorithm = True  # headers and body go out separately; no 40 ms ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: stdout carries only the listening line, which tests parse."""


class ThreadedServer:
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> str:
        raise NotImplementedError

    def _run(self, server: ThreadingHTTPServer, name: str) -> int:
        """Serve `server` in a thread; returns its port."""
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True,
                                        args=(0.05,))  # short poll so stop() is quick, unlike 0.5 s
        self._thread.start()
        return server.server_address[1]

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
