"""The hermes-only tool names in `tools`: accepted for runtime = "hermes", refused with a
located error elsewhere, and never on by default."""

from __future__ import annotations

import pytest

from hermesd.config import HERMES_TOOLS, ConfigError, loads

AGENT = """\
[llm.default]
base_url = "https://llm.example/v1"
model = "big"

[agents.a]
runtime = "{runtime}"
tools = ["memory", {tools}]
"""


def test_hermes_agent_may_list_every_hermes_tool() -> None:
    listed = ", ".join(f'"{tool}"' for tool in HERMES_TOOLS)
    config = loads(AGENT.format(runtime="hermes", tools=listed))
    assert config.worker_spec("a").tools == ("memory", *HERMES_TOOLS)


@pytest.mark.parametrize("tool", HERMES_TOOLS)
def test_hermes_tool_for_another_runtime_names_the_entry(tool: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(AGENT.format(runtime="openai", tools=f'"{tool}"'), "hermesd.toml")
    assert (info.value.line, info.value.key) == (7, "agents.a.tools[1]")
    assert f'"{tool}" is a tool of runtime = "hermes" only' in info.value.message


def test_default_tools_leave_out_every_hermes_tool() -> None:
    config = loads(AGENT.format(runtime="hermes", tools='"x"').replace('tools = ["memory", "x"]\n', ""))
    assert not set(HERMES_TOOLS) & set(config.worker_spec("a").tools)


def test_unknown_tool_lists_the_hermes_ones() -> None:
    with pytest.raises(ConfigError) as info:
        loads(AGENT.format(runtime="hermes", tools='"webb"'), "hermesd.toml")
    assert all(f'"{tool}"' in info.value.message for tool in ("web", "delegation", "code_execution"))


def test_hermes_agent_may_name_any_other_hermes_toolset() -> None:
    config = loads(AGENT.format(runtime="hermes", tools='"hermes:vision", "hermes:image_gen"'))
    assert config.worker_spec("a").tools == ("memory", "hermes:vision", "hermes:image_gen")


def test_hermes_toolset_for_another_runtime_names_the_entry() -> None:
    with pytest.raises(ConfigError) as info:
        loads(AGENT.format(runtime="openai", tools='"hermes:vision"'), "hermesd.toml")
    assert (info.value.line, info.value.key) == (7, "agents.a.tools[1]")
    assert 'is a tool of runtime = "hermes" only' in info.value.message


def test_unknown_tool_says_hermes_toolsets_are_named_hermes_colon_name() -> None:
    with pytest.raises(ConfigError) as info:
        loads(AGENT.format(runtime="hermes", tools='"vision"'), "hermesd.toml")
    assert (info.value.line, info.value.key) == (7, "agents.a.tools[1]")
    assert 'or "hermes:TOOLSET", got "vision"' in info.value.message
