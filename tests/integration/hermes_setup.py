"""What the hermes runtime's integration tests share: the skip when hermes-agent is not
installed, and a config whose default provider is the fake model server."""

from __future__ import annotations

import importlib.util

import pytest

from tests.fakes.openai_server import FakeOpenAI


def require_hermes() -> None:
    """Skip the calling test module when the `hermes` extra is not installed."""
    if importlib.util.find_spec("run_agent") is None:
        pytest.skip("hermes-agent is not installed (pip install hermesd[hermes])",
                    allow_module_level=True)


def config(llm: FakeOpenAI, agents: str, timeout: int = 5) -> str:
    """hermesd.toml text: `agents` below a default provider (model "model-a") at `llm`."""
    return f"""
[llm.default]
base_url = "{llm.url}"
model = "model-a"
timeout = {timeout}
max_retries = 0
{agents}"""
