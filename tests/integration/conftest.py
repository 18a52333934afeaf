"""Fixtures for the integration tests beyond tests/conftest.py's `daemon`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.notify_socket import NotifySocket
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Daemon


@pytest.fixture
def notify(daemon: Daemon) -> Iterator[NotifySocket]:
    """A service manager's notify socket beside the daemon's files (pass its address to
    `Daemon.start` as NOTIFY_SOCKET: tests/conftest.py removes the tests' own)."""
    with NotifySocket(str(daemon.root / "notify.sock")) as socket_:
        yield socket_


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    """The fake OpenAI-compatible model server, on 127.0.0.1."""
    with FakeOpenAI() as fake:
        yield fake
