"""What the HTTP fakes share: a ThreadingHTTPServer run in a background thread, stopped
quickly, usable as a context manager."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


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
