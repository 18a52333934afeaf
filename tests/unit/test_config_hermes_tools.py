"""The hermes-only tool names in `tools`: accepted for runtime = "hermes", refused with a
located error elsewhere, and never on by default."""

from __future__ import annotations

import pytest

from hermesd.config import ConfigError, loads

AGENT = """\
[llm.default]
base_url = "https://llm.example/v1"
model = "big"

[agents.a]
runtime = "{runtime}"
tools = ["memory", "terminal"]
"""


def test_hermes_agent_may_list_terminal_and_files() -> None:
    config = loads(AGENT.format(runtime="hermes").replace('"terminal"', '"terminal", "files"'))
    assert config.worker_spec("a").tools == ("memory", "terminal", "files")


def test_terminal_for_another_runtime_names_the_entry() -> None:
    with pytest.raises(ConfigError) as info:
        loads(AGENT.format(runtime="openai"), "hermesd.toml")
    assert (info.value.line, info.value.key) == (7, "agents.a.tools[1]")
    assert 'runtime = "hermes" only' in info.value.message


def test_default_tools_leave_out_terminal_and_files() -> None:
    config = loads(AGENT.format(runtime="hermes").replace('tools = ["memory", "terminal"]\n', ""))
    assert not {"terminal", "files"} & set(config.worker_spec("a").tools)
