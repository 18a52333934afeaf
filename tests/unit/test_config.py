"""hermesd.config: what an operator sees when the config is right, and when it is wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermesd import protocol
from hermesd.config import ALL_TOOLS, ConfigError, embedded_default, load, loads

EXAMPLE = Path(__file__).parents[2] / "etc" / "hermesd.toml"

BASE = dedent("""\
    [daemon]
    state_dir = "/srv/hermesd"
    default_agent = "home"

    [llm.default]
    base_url = "https://llm.example/v1"
    model = "big"

    [agents.coder]
    runtime = "openai"
    can_message = ["home"]

    [agents.home]
    runtime = "echo"

    [[routes]]
    match = "local:*"
    agent = "home"

    [[routes]]
    match = "telegram:dm:*"
    agent = "coder"
    """)


def with_line(after: str, line: str) -> str:
    """BASE with `line` inserted after the (first) line `after`."""
    return BASE.replace(after, f"{after}\n{line}", 1)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads(text, "hermesd.toml")
    return info.value


# --------------------------------------------------------------------------- good configs


def test_example_file_loads():
    config = load(EXAMPLE)
    assert set(config.agents) == {"coder", "cs", "home"}
    assert config.source == str(EXAMPLE)


def test_example_platform_keys_are_valid_once_uncommented(tmp_path, monkeypatch):
    token = tmp_path / "telegram.token"
    token.write_text("123:secret\n")
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret")
    text = re.sub(r"(?m)^# (\[platforms\.\w+\]|\w+ = .*)$", r"\1", EXAMPLE.read_text())
    text = text.replace('user = "hermesd"', 'user = "root"')  # the package creates hermesd
    config = loads(text.replace("/etc/hermesd/telegram.token", str(token)))
    assert config.platforms.telegram.read_token() == "123:secret"
    assert config.platforms.discord.read_token() == "discord-secret"


def test_base_config_loads_with_defaults():
    config = loads(BASE)
    assert config.daemon.runtime_dir == "/run/hermesd"
    assert config.daemon.fatal_failures == 5
    assert config.platforms.telegram is None
    assert tuple(config.agents["home"].tools) == ALL_TOOLS


DISCORD = '[platforms.discord]\ntoken_env = "DISCORD_TOKEN"\n'


def test_discord_replies_in_the_channel_unless_reply_in_thread_is_set():
    cfg = loads(BASE + DISCORD)
    assert cfg.platforms.discord.reply_in_thread is False
    assert cfg.routes[1].reply_in_thread is None  # the platform's setting applies


def test_route_may_turn_reply_in_thread_on_for_its_conversations():
    cfg = loads(with_line('agent = "coder"', "reply_in_thread = true") + DISCORD + "reply_in_thread = false\n")
    assert (cfg.platforms.discord.reply_in_thread, cfg.routes[1].reply_in_thread) == (False, True)


def test_reply_in_thread_must_be_true_or_false():
    error = error_of(BASE + DISCORD + 'reply_in_thread = "yes"\n')
    assert (error.line, error.key) == (25, "platforms.discord.reply_in_thread")
    assert error.message == "expected boolean, got string"


def test_local_socket_defaults_to_runtime_dir():
    config = loads('[daemon]\nruntime_dir = "/run/x"\n')
    assert config.platforms.local.socket == "/run/x/local.sock"


def test_integers_are_accepted_for_seconds():
    assert loads("[daemon]\nstop_timeout = 3\n").daemon.stop_timeout == 3.0


def test_embedded_default_is_valid_and_has_an_echo_agent(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.state")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    config = embedded_default()
    assert config.source == "<embedded default>"
    assert config.agents["echo"].runtime == "echo"
    assert config.daemon.default_agent == "echo"
    assert config.daemon.state_dir == "/home/u/.state/hermesd"
    assert config.daemon.runtime_dir == "/run/user/1000/hermesd"
    assert config.platforms.telegram is None and config.platforms.discord is None


def test_embedded_default_without_xdg_runtime_dir_uses_tmp(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert embedded_default().daemon.runtime_dir == f"/tmp/hermesd-{os.getuid()}"


# --------------------------------------------------------------------------- worker specs


def test_worker_spec_puts_relative_workspace_under_state_dir():
    spec = loads(BASE).worker_spec("home")
    assert spec == protocol.WorkerSpec(
        agent_id="home",
        runtime="echo",
        workspace="/srv/hermesd/agents/home",
        tools=("memory", "session_search", "skills", "cron", "send_to_agent", "send_file"),
    )


def test_worker_spec_keeps_absolute_workspace():
    text = with_line('runtime = "echo"', 'workspace = "/data/home"')
    assert loads(text).worker_spec("home").workspace == "/data/home"


def test_worker_spec_resolves_named_llm():
    text = with_line('runtime = "openai"', 'llm = "small"') + dedent("""\
        [llm.small]
        base_url = "http://127.0.0.1:8080/v1"
        model = "tiny"
        api_key_env = "K"
        """)
    assert loads(text).worker_spec("coder").llm == protocol.LLMSpec(
        base_url="http://127.0.0.1:8080/v1", model="tiny", api_key_env="K"
    )


def test_worker_spec_resolves_inline_llm():
    text = with_line('runtime = "openai"', 'llm = { base_url = "http://h/v1", model = "m" }')
    expected = protocol.LLMSpec(base_url="http://h/v1", model="m")
    assert loads(text).worker_spec("coder").llm == expected


def test_openai_agent_without_llm_uses_default_provider():
    assert loads(BASE).worker_spec("coder").llm.model == "big"


def test_echo_agent_gets_no_llm():
    assert loads(BASE).worker_spec("home").llm is None


def test_worker_spec_carries_shared_paths_memory_and_delay():
    text = with_line('runtime = "echo"', dedent("""\
        shared_paths = [{ path = "/srv/docs" }, { path = "/srv/out", mode = "rw" }]
        memory_max = "64M"
        echo_delay = 1.5"""))
    spec = loads(text).worker_spec("home")
    assert spec.shared_paths == (
        protocol.SharedPathSpec("/srv/docs", "ro"),
        protocol.SharedPathSpec("/srv/out", "rw"),
    )
    assert spec.memory_max == 64 * 1024 * 1024
    assert spec.echo_delay == 1.5


def test_equal_configs_give_equal_specs():
    assert loads(BASE).worker_specs() == loads(BASE, "other.toml").worker_specs()


def test_daemon_user_is_resolved_into_every_worker_spec():
    spec = loads(with_line('default_agent = "home"', 'user = "root"')).worker_spec("coder")
    assert spec.run_as == protocol.RunAs(user="root", uid=0, gid=0, groups=(0,))


def test_changing_one_agent_changes_only_its_spec():
    old = loads(BASE).worker_specs()
    new = loads(with_line('runtime = "echo"', 'echo_delay = 2')).worker_specs()
    assert [agent for agent in old if old[agent] != new[agent]] == ["home"]


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@given(st.integers(1, 10**6), st.sampled_from(sorted(SIZE_UNITS)), st.booleans())
def test_memory_max_size_strings_become_bytes(number, unit, lower):
    size = f"{number}{unit.lower() if lower else unit}"
    config = loads(f'[agents.a]\nruntime = "echo"\nmemory_max = "{size}"\n')
    assert config.agents["a"].memory_max == number * SIZE_UNITS[unit]


@given(st.integers(min_value=1, max_value=2**62))
def test_memory_max_integers_are_bytes(number):
    config = loads(f'[agents.a]\nruntime = "echo"\nmemory_max = {number}\n')
    assert config.worker_spec("a").memory_max == number


# --------------------------------------------------------------------------- errors


def test_error_message_is_file_line_key_message():
    error = error_of('[agents.coder]\nruntime = "ecko"\n')
    assert (error.path, error.line, error.key) == ("hermesd.toml", 2, "agents.coder.runtime")
    assert str(error) == (
        "hermesd.toml:2: agents.coder.runtime: "
        'expected one of "echo", "openai", "hermes" or "python:MODULE:FACTORY", got "ecko"'
    )


def test_unknown_daemon_user_names_its_line():
    error = error_of(with_line('default_agent = "home"', 'user = "no-such-user-x"'))
    assert (error.line, error.key) == (4, "daemon.user")
    assert error.message == 'no user "no-such-user-x" on this system'


def test_unknown_top_level_table_names_its_line():
    error = error_of(BASE + '\n[agent.extra]\nruntime = "echo"\n')
    assert (error.line, error.key) == (24, "agent")
    assert error.message == 'unknown key (did you mean "agents"?)'


def test_unknown_daemon_key_names_its_line():
    error = error_of(with_line('default_agent = "home"', 'stat_dir = "/x"'))
    assert (error.line, error.key) == (4, "daemon.stat_dir")
    assert "unknown key" in error.message


def test_unknown_agent_key_names_its_line():
    error = error_of(with_line('runtime = "echo"', 'memory = "1G"'))
    assert (error.line, error.key) == (15, "agents.home.memory")
    assert error.message == 'unknown key (did you mean "memory_max"?)'


def test_unknown_route_key_names_its_line():
    error = error_of(with_line('agent = "coder"', 'priority = 1'))
    assert (error.line, error.key) == (23, "routes[1].priority")


def test_unknown_platform_names_its_line():
    error = error_of(BASE + "[platforms.slack]\n")
    assert (error.line, error.key) == (23, "platforms.slack")


def test_wrong_type_names_key_and_types():
    error = error_of(BASE.replace('state_dir = "/srv/hermesd"', "state_dir = 42"))
    assert (error.line, error.key) == (2, "daemon.state_dir")
    assert error.message == "expected string, got integer"


def test_out_of_range_number_says_what_was_there():
    error = error_of("[daemon]\n\nheartbeat_interval = -1\n")
    assert (error.line, error.key) == (3, "daemon.heartbeat_interval")
    assert error.message == "expected number > 0.0, got -1"


def test_heartbeat_timeout_must_exceed_interval():
    error = error_of("[daemon]\nheartbeat_interval = 30\nheartbeat_timeout = 20\n")
    assert (error.line, error.key) == (3, "daemon.heartbeat_timeout")


def test_missing_required_key_points_at_its_table():
    error = error_of(BASE + '\n[agents.extra]\nworkspace = "x"\n')
    assert (error.line, error.key) == (24, "agents.extra.runtime")
    assert error.message == "required key is missing"


def test_duplicate_agent_id_names_the_second_definition():
    error = error_of(BASE + '\n[agents.coder]\nruntime = "echo"\n')
    assert (error.line, error.key) == (24, "agents.coder")
    assert error.message == 'agent id "coder" is defined twice (first at line 9)'


def test_duplicate_key_names_the_second_line():
    error = error_of('[daemon]\nlog_level = "info"\nlog_level = "debug"\n')
    assert (error.line, error.key) == (3, "daemon.log_level")


def test_route_to_undefined_agent_names_the_route():
    error = error_of(BASE.replace('agent = "coder"', 'agent = "coda"'))
    assert (error.line, error.key) == (22, "routes[1].agent")
    assert error.message == 'no agent "coda" is defined (agents: coder, home)'


def test_route_pattern_must_start_with_a_platform():
    error = error_of(BASE.replace('match = "local:*"', 'match = "slack:*"'))
    assert (error.line, error.key) == (17, "routes[0].match")


def test_route_pattern_rejects_empty_segments():
    error = error_of(BASE.replace('match = "local:*"', 'match = "local::x"'))
    assert (error.line, error.key) == (17, "routes[0].match")


def test_default_agent_must_be_defined():
    error = error_of(BASE.replace('default_agent = "home"', 'default_agent = "house"'))
    assert (error.line, error.key) == (3, "daemon.default_agent")


def test_unreadable_token_file_names_the_file_and_os_error(tmp_path):
    missing = tmp_path / "telegram.token"
    telegram = f'[platforms.telegram]\nallowed_users = "*"\ntoken_file = "{missing}"'
    error = error_of(f"{BASE}\n{telegram}")
    assert (error.line, error.key) == (26, "platforms.telegram.token_file")
    assert error.message == f"cannot read {missing}: No such file or directory"


def test_bot_platform_needs_exactly_one_token_source():
    error = error_of('[platforms.discord]\ntoken_env = "A"\ntoken_file = "/b"\n')
    assert (error.line, error.key) == (1, "platforms.discord")


def test_missing_token_env_raises_at_read_pointing_at_its_key(monkeypatch):
    monkeypatch.delenv("HERMESD_TEST_TOKEN", raising=False)
    text = '[platforms.discord]\nallowed_users = [1]\ntoken_env = "HERMESD_TEST_TOKEN"'
    config = loads(text, "h.toml")
    with pytest.raises(ConfigError) as info:
        config.platforms.discord.read_token()
    error = info.value
    assert (error.path, error.line, error.key) == ("h.toml", 3, "platforms.discord.token_env")


def test_bad_memory_max_names_its_line():
    error = error_of(with_line('runtime = "echo"', 'memory_max = "lots"'))
    assert (error.line, error.key) == (15, "agents.home.memory_max")
    assert '"lots"' in error.message


def test_bad_agent_id_is_rejected():
    error = error_of(BASE + '\n[agents."Bad Agent"]\nruntime = "echo"\n')
    assert (error.line, error.key) == (24, 'agents."Bad Agent"')
    assert "^[a-z0-9][a-z0-9_-]{0,31}$" in error.message


def test_can_message_to_unknown_agent_names_the_entry():
    error = error_of(BASE.replace('can_message = ["home"]', 'can_message = ["home", "ops"]'))
    assert (error.line, error.key) == (11, "agents.coder.can_message[1]")


def test_agent_cannot_message_itself():
    error = error_of(BASE.replace('can_message = ["home"]', 'can_message = ["coder"]'))
    assert (error.line, error.key) == (11, "agents.coder.can_message[0]")


def test_openai_agent_needs_an_llm():
    error = error_of('[agents.coder]\nruntime = "openai"\n')
    assert (error.line, error.key) == (1, "agents.coder.llm")
    assert "runtime openai needs an llm" in error.message


def test_llm_name_must_be_defined():
    error = error_of(with_line('runtime = "openai"', 'llm = "nope"'))
    assert (error.line, error.key) == (11, "agents.coder.llm")


def test_hermes_agent_with_llm_profile_gets_no_provider():
    text = BASE + '\n[agents.h]\nruntime = "hermes"\nllm = "profile"\n'
    assert loads(text).worker_spec("h").llm is None


def test_llm_profile_is_for_hermes_agents_only():
    error = error_of(with_line('runtime = "openai"', 'llm = "profile"'))
    assert (error.line, error.key) == (11, "agents.coder.llm")
    assert 'for runtime = "hermes" only' in error.message


def test_a_provider_cannot_be_named_profile():
    error = error_of(BASE + '\n[llm.profile]\nbase_url = "http://h/v1"\nmodel = "m"\n')
    assert error.key == "llm.profile"
    assert "reserved" in error.message


def test_shared_path_must_be_absolute():
    error = error_of('[agents.a]\nruntime = "echo"\nshared_paths = [{ path = "docs" }]\n')
    assert (error.line, error.key) == (3, "agents.a.shared_paths[0].path")


def test_toml_syntax_error_names_its_line():
    error = error_of(BASE.replace('model = "big"', 'model = "big'))
    assert error.line == 7
    assert "TOML syntax error" in error.message


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert info.value.path == str(tmp_path / "absent.toml")
    assert "No such file or directory" in info.value.message


# --------------------------------------------------------------------------- locating keys


def test_dotted_keys_are_located():
    error = error_of('[agents]\ncoder.runtime = "echo"\nhome.runtime = "ecko"\n')
    assert (error.line, error.key) == (3, "agents.home.runtime")


def test_keys_inside_multiline_values_are_not_mistaken_for_keys():
    text = 'x = """\n[daemon]\nstate_dir = 1\n"""\n'
    error = error_of(text)
    assert (error.line, error.key) == (1, "x")


def test_error_inside_inline_table_points_at_its_key():
    text = '[agents.a]\nruntime = "openai"\n\nllm = { base_url = "http://h", modle = "m" }'
    error = error_of(text)
    assert (error.line, error.key) == (4, "agents.a.llm.modle")
