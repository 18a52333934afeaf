"""Fuzzing hermesd.config.loads: valid documents are generated, then damaged one way at a
time; whatever the text, the operator gets a Config or one ConfigError that says where."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hermesd import protocol
from hermesd.config import ALL_TOOLS, ConfigError, loads, parse_size
from tests.unit._fuzz import FUZZ

SOURCE = "fuzz.toml"

Path = tuple[str | int, ...]

# Text anywhere in a TOML file: every Unicode scalar value (a file decoded as UTF-8 holds no
# surrogates).
chars = st.characters(blacklist_categories=("Cs",))
text = st.text(chars, max_size=12)
abs_path = text.map(lambda t: "/" + t)
ident = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
seconds = st.floats(0.01, 1e6)


# --------------------------------------------------------------------------- a document


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def dotted(path: Path) -> str:
    """How an error names a key: bare keys joined by dots, others as JSON strings (non-ASCII
    as written), [i] for an array element."""
    def name(part: str) -> str:
        return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part, ensure_ascii=False)

    return "".join(f"[{part}]" if isinstance(part, int) else f".{name(part)}" for part in path)[1:]


@dataclass
class Table:
    path: tuple[str, ...]  # header name, e.g. ("agents", "coder")
    entries: dict[str, Any] = field(default_factory=dict)
    array: bool = False  # [[routes]]


@dataclass
class Document:
    tables: list[Table]

    def render(self) -> tuple[str, dict[Path, int]]:
        """The TOML text, and the line each table and key is written on."""
        lines: list[str] = []
        where: dict[Path, int] = {}
        counts: dict[tuple[str, ...], int] = {}
        for table in self.tables:
            name = ".".join(map(toml_key, table.path))
            lines += ["", f"[[{name}]]" if table.array else f"[{name}]"]
            path: Path = table.path
            if table.array:
                counts[table.path] = counts.get(table.path, -1) + 1
                path += (counts[table.path],)
            where.setdefault(path, len(lines))
            for key, value in table.entries.items():
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
                where[path + (key,)] = len(lines)
        return "\n".join(lines) + "\n", where

    def keyed(self) -> list[tuple[Table, Path]]:
        """Every table with the key path of its entries (routes numbered)."""
        out, count = [], 0
        for table in self.tables:
            path: Path = table.path + ((count,) if table.array else ())
            count += table.array
            out.append((table, path))
        return out


@st.composite
def documents(draw: st.DrawFn) -> Document:
    """A valid config: every section, cross references that resolve."""
    agents = draw(st.lists(ident, min_size=1, max_size=4, unique=True))
    providers = draw(st.lists(ident, max_size=2, unique=True))
    interval = draw(st.floats(0.1, 100))
    backoff = draw(seconds)
    daemon = {
        "state_dir": draw(abs_path), "runtime_dir": draw(abs_path),
        "log_level": draw(st.sampled_from(["debug", "info", "warning", "error"])),
        "heartbeat_interval": interval, "heartbeat_timeout": interval * 2,
        "backoff_initial": backoff, "backoff_max": backoff + draw(st.floats(0, 100)),
        "fatal_failures": draw(st.integers(1, 100)), "stop_timeout": draw(seconds),
    }
    if draw(st.booleans()):
        daemon["default_agent"] = draw(st.sampled_from(agents))
    tables = [Table(("daemon",), daemon)]
    for name in providers:
        llm = {"base_url": draw(st.sampled_from(["http://", "https://"])) + draw(text),
               "model": draw(text), "max_retries": draw(st.integers(0, 10))}
        tables.append(Table(("llm", name), llm))
    users = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3) | st.just("*")
    for name in draw(st.lists(st.sampled_from(["telegram", "discord"]), unique=True)):
        bot = {"token_env": draw(text), "allowed_users": draw(users)}
        tables.append(Table(("platforms", name), bot))
    if draw(st.booleans()):
        tables.append(Table(("platforms", "local"), {"socket": draw(abs_path)}))
    for agent_id in agents:
        runtime = draw(st.sampled_from(["echo", "hermes", "openai" if providers else "echo"]))
        agent: dict[str, Any] = {"runtime": runtime}
        if providers and draw(st.booleans()):
            agent["llm"] = draw(st.sampled_from(providers))
        elif runtime == "openai" or draw(st.booleans()):
            agent["llm"] = {"base_url": "http://h/v1", "model": draw(text)}
        others = [a for a in agents if a != agent_id]
        optional = {
            "workspace": text,
            "tools": st.lists(st.sampled_from(ALL_TOOLS), unique=True),
            "memory_max": st.integers(1, 2**40) | st.from_regex(r"[1-9][0-9]{0,4}[KMGkmg]?", fullmatch=True),
            "can_message": st.lists(st.sampled_from(others), unique=True) if others else st.just([]),
            "shared_paths": st.lists(st.fixed_dictionaries(
                {"path": abs_path}, optional={"mode": st.sampled_from(["ro", "rw"])}), max_size=2),
            "echo_delay": st.floats(0, 10), "history_budget": st.integers(1000, 10**6),
            "max_tool_steps": st.integers(1, 50),
        }
        for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
            agent[key] = draw(optional[key])
        tables.append(Table(("agents", agent_id), agent))
    for _ in range(draw(st.integers(0, 3))):
        segments = draw(st.lists(text.map(lambda t: t.replace(":", "") or "x"), max_size=3))
        route: dict[str, Any] = {
            "match": ":".join([draw(st.sampled_from(["telegram", "discord", "local", "agent", "*"])),
                               *segments]),
            "agent": draw(st.sampled_from(agents)),
        }
        if draw(st.booleans()):
            route["allowed_users"] = draw(users)
        tables.append(Table(("routes",), route, array=True))
    return Document(tables)


def outcome(document_text: str) -> Any:
    """loads' result, checking that a refusal is a well-formed ConfigError."""
    try:
        return loads(document_text, SOURCE)
    except ConfigError as error:
        assert str(error).startswith(f"{SOURCE}:{error.line}: ")
        assert 1 <= error.line <= document_text.count("\n") + 1, str(error)
        if error.key:
            assert str(error).startswith(f"{SOURCE}:{error.line}: {error.key}: ")
        assert error.message.strip(), str(error)
        return error


def refused(document_text: str) -> ConfigError:
    result = outcome(document_text)
    assert isinstance(result, ConfigError), f"accepted:\n{document_text}"
    return result


# --------------------------------------------------------------------------- valid documents


@FUZZ
@given(documents())
def test_generated_config_loads_the_same_twice(document: Document) -> None:
    text_, _ = document.render()
    config = loads(text_, SOURCE)
    assert config == loads(text_, SOURCE)


@FUZZ
@given(documents())
def test_every_accepted_agent_can_be_sent_to_the_zygote(document: Document) -> None:
    """What the loader accepts, the wire format carries (no integer past 64 bits)."""
    codec = protocol.Codec(protocol.SpawnRequest)
    for spec in loads(document.render()[0], SOURCE).worker_specs().values():
        assert codec.decode(codec.encode(protocol.SpawnRequest(1, spec))[4:]).spec == spec


# --------------------------------------------------------------------------- one damage each


def wrong_type(value: Any) -> st.SearchStrategy[Any]:
    """A value no key that holds `value` accepts (an int is a fine float, so not that)."""
    if isinstance(value, bool):
        return st.sampled_from(["yes", 1, [True]])
    if isinstance(value, (int, float)):
        return st.sampled_from(["one", [1], True, {"a": 1}])
    if isinstance(value, str):
        return st.sampled_from([True, [True], {"a": True}])
    return st.sampled_from([True, "x" if isinstance(value, dict) else {"a": 1}])


@FUZZ
@given(documents(), st.data())
def test_wrong_type_names_the_key_and_its_line(document: Document, data: st.DataObject) -> None:
    table, path = data.draw(st.sampled_from([(t, p) for t, p in document.keyed() if t.entries]))
    key = data.draw(st.sampled_from(sorted(table.entries)))
    table.entries[key] = data.draw(wrong_type(table.entries[key]))
    text_, where = document.render()
    error = refused(text_)
    assert within(error.key, dotted(path + (key,))) and error.line == where[path + (key,)]


def within(key: str, expected: str) -> bool:
    """`key` is `expected` or a key inside it (an array element, an inline table's key)."""
    return key == expected or key.startswith((expected + ".", expected + "["))


@FUZZ
@given(documents(), st.data(), st.text(chars, min_size=1, max_size=10))
@example(Document([Table(("daemon",))]), None, "x - at `$.y`")  # msgspec's own separator
def test_unknown_key_is_named_with_its_line(document: Document, data: Any, key: str) -> None:
    table, path = data.draw(st.sampled_from(document.keyed())) if data else document.keyed()[0]
    if key in table.entries or key in KNOWN_KEYS:
        return
    table.entries[key] = 1
    text_, where = document.render()
    error = refused(text_)
    assert (error.key, error.line) == (dotted(path + (key,)), where[path + (key,)])
    assert error.message.startswith("unknown key")


KNOWN_KEYS = {
    "state_dir", "runtime_dir", "default_agent", "log_level", "heartbeat_interval",
    "heartbeat_timeout", "backoff_initial", "backoff_max", "backoff_reset_after",
    "fatal_failures", "fatal_window", "stop_timeout", "base_url", "model", "api_key_env",
    "api_key_file", "timeout", "max_retries", "token_file", "token_env", "allowed_users",
    "api_base", "group_sessions", "require_mention_in_groups", "gateway_url", "allowed_roles",
    "allowed_guilds", "channel_sessions", "require_mention", "reply_in_thread", "enabled", "socket", "runtime",
    "llm", "workspace", "shared_paths", "can_message", "memory_max", "tools", "echo_delay",
    "history_budget", "max_tool_steps", "match", "agent",
}


@FUZZ
@given(st.text(chars, min_size=1, max_size=10))
def test_unknown_top_level_table_is_named(name: str) -> None:
    if name in {"daemon", "llm", "platforms", "agents", "routes"}:
        return
    error = refused(f"[{toml_key(name)}]\nx = 1\n")
    assert (error.key, error.line) == (dotted((name,)), 1)


REQUIRED = {"agents": "runtime", "llm": "base_url", "routes": "match"}


@FUZZ
@given(documents(), st.data())
def test_missing_required_key_points_at_its_table(document: Document, data: st.DataObject) -> None:
    choices = [(t, p) for t, p in document.keyed() if t.path[0] in REQUIRED]
    table, path = data.draw(st.sampled_from(choices))
    key = data.draw(st.sampled_from(["model", "base_url"] if path[0] == "llm" else
                                    ["match", "agent"] if path[0] == "routes" else ["runtime"]))
    del table.entries[key]
    text_, where = document.render()
    error = refused(text_)
    assert (error.key, error.line, error.message) == (
        dotted(path + (key,)), where[path], "required key is missing")


@FUZZ
@given(st.text(chars, max_size=24) | st.from_regex(r"\s*[0-9]{1,30}\s*[KMGTkmgtB]?\s*", fullmatch=True))
@example("99999999999999999999T")
@example("0")
def test_memory_max_is_a_size_or_an_error_naming_it(size: str) -> None:
    result = outcome(f'[agents.a]\nruntime = "echo"\n\nmemory_max = {toml_value(size)}\n')
    if isinstance(result, ConfigError):
        assert (result.key, result.line) == ("agents.a.memory_max", 4)
    else:
        assert result.agents["a"].memory_max == parse_size(size) < 2**63


@FUZZ
@given(st.integers(min_value=2**63))
def test_integer_past_64_bits_names_its_key(number: int) -> None:
    error = refused(f'[agents.a]\nruntime = "echo"\nhistory_budget = {number}\n')
    assert (error.key, error.line) == ("agents.a.history_budget", 3)


PATH_KEYS = [("daemon", "state_dir"), ("daemon", "runtime_dir"),
             ("platforms", "local", "socket"), ("agents", "a", "shared_paths", 0, "path")]


@FUZZ
@given(st.sampled_from(PATH_KEYS), text.filter(lambda t: not t.startswith("/")))
def test_relative_path_is_refused_naming_its_key(path: Path, value: str) -> None:
    tables = {"daemon": "[daemon]\n{k} = {v}\n", "platforms": "[platforms.local]\n{k} = {v}\n",
              "agents": '[agents.a]\nruntime = "echo"\nshared_paths = [{{ path = {v} }}]\n'}
    text_ = tables[str(path[0])].format(k=path[-1], v=toml_value(value))
    error = refused(text_)
    assert error.key == dotted(path) and "must be an absolute path" in error.message


@FUZZ
@given(st.text(chars, max_size=20))
@example("local::x")
@example("")
def test_route_pattern_is_accepted_or_named(pattern: str) -> None:
    result = outcome(f'[agents.a]\nruntime = "echo"\n\n[[routes]]\nmatch = {toml_value(pattern)}\n'
                     'agent = "a"\n')
    segments = pattern.split(":")
    valid = all(segments) and segments[0] in ("telegram", "discord", "local", "agent", "*")
    if valid:
        assert not isinstance(result, ConfigError), result
    else:
        assert isinstance(result, ConfigError) and (result.key, result.line) == ("routes[0].match", 5)


@FUZZ
@given(st.text(chars, min_size=1, max_size=12))
@example("ключ")
@example("a.b")
def test_agent_id_is_accepted_or_named(agent_id: str) -> None:
    result = outcome(f'[agents.{toml_key(agent_id)}]\nruntime = "echo"\n')
    if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", agent_id):
        assert not isinstance(result, ConfigError), result
    else:
        assert isinstance(result, ConfigError) and (result.key, result.line) == (
            dotted(("agents", agent_id)), 1)


@FUZZ
@given(documents(), st.data())
def test_table_defined_twice_names_the_second(document: Document, data: st.DataObject) -> None:
    table = data.draw(st.sampled_from([t for t in document.tables if not t.array]))
    document.tables.append(Table(table.path, dict(table.entries)))
    text_, _ = document.render()
    header = f"[{'.'.join(map(toml_key, table.path))}]"
    second = max(i for i, line in enumerate(text_.split("\n"), 1) if line == header)
    error = refused(text_)
    assert (error.key, error.line) == (dotted(table.path), second)
    assert "defined twice" in error.message


@FUZZ
@given(documents(), st.data())
def test_key_written_twice_names_the_second(document: Document, data: st.DataObject) -> None:
    table, path = data.draw(st.sampled_from([(t, p) for t, p in document.keyed() if t.entries]))
    key = data.draw(st.sampled_from(sorted(table.entries)))
    text_, where = document.render()
    lines = text_.split("\n")
    line = where[path + (key,)]
    lines.insert(line, lines[line - 1])
    error = refused("\n".join(lines))
    assert (error.key, error.line) == (dotted(path + (key,)), line + 1)


# --------------------------------------------------------------------------- syntax damage


damage = st.tuples(st.sampled_from(["insert", "delete", "replace", "cut"]), st.integers(0, 10**6),
                   st.text(st.sampled_from('[]{}="\'\\#.,:\n\t ') | chars, min_size=1, max_size=3))


@FUZZ
@given(documents(), st.lists(damage, min_size=1, max_size=4))
@example(Document([]), [("insert", 0, '"\\N" = 1')])  # not a TOML escape, nor a Python one
@example(Document([]), [("insert", 0, '["\\u12"]')])
def test_damaged_text_gives_a_config_or_a_located_error(document: Document, edits: list) -> None:
    text_ = document.render()[0]
    for op, at, piece in edits:
        at %= len(text_) + 1
        if op == "insert":
            text_ = text_[:at] + piece + text_[at:]
        elif op == "delete":
            text_ = text_[:at] + text_[at + len(piece):]
        elif op == "replace":
            text_ = text_[:at] + piece + text_[at + len(piece):]
        else:
            text_ = text_[:at]
    outcome(text_)


@FUZZ
@given(st.text(chars, max_size=60))
@example("\r0")  # tomlkit counts "\r" as a line break, editors do not
@example('# \u2028\n\nx = "')
def test_any_text_gives_a_config_or_a_located_error(anything: str) -> None:
    outcome(anything)


def test_error_names_unicode_keys_as_written() -> None:
    with pytest.raises(ConfigError) as info:
        loads('[agents."ключ"]\nruntime = "echo"\n', SOURCE)
    assert info.value.key == 'agents."ключ"'
