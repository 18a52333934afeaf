"""Config errors worded in TOML's terms: where a key is (`agents."a b".tools[1]`) and what
is wrong with it, from msgspec's validation messages and the schema itself."""

from __future__ import annotations

import difflib
import json
import operator
import re
from functools import reduce
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from ._toml_lines import KeyPath

_TOML_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "object": "table", "null": ""}


def dotted(path: KeyPath) -> str:
    """("agents", "a b", "tools", 1) -> 'agents."a b".tools[1]'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            bare = re.fullmatch(r"[A-Za-z0-9_-]+", part)
            out += ("." if out else "") + (part if bare else json.dumps(part, ensure_ascii=False))
    return out


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _members(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return get_args(tp) if get_origin(tp) in (Union, UnionType) else (tp,)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _type_at(tp: Any, path: list[str | int]) -> Any:
    """The annotation at `path` inside `tp`: its key names or choices explain an error."""
    for part in path:
        for member in _members(tp):
            if isinstance(part, int) and get_origin(member) is list:
                tp = get_args(member)[0]
                break
            if isinstance(part, str) and _is_struct(member):
                tp = next(f.type for f in msgspec.structs.fields(member) if f.name == part)
                break
    return tp


def explain(exc: msgspec.ValidationError, raw: Any, tp: Any) -> tuple[list[str | int], str]:
    """msgspec's "Expected `str`, got `int` - at `$.a[0]`" -> (["a", 0], "expected string,
    got integer"), worded in TOML's terms and naming the unknown or missing key itself."""
    located = re.fullmatch(r"(.*) - at `(\$[.\w\[\]]*)`", str(exc), re.DOTALL)
    message, where = located.groups() if located else (str(exc), "$")  # a key may hold " - at `"
    path: list[str | int] = [int(i) if i else k for k, i in re.findall(r"\.(\w+)|\[(\d+)\]", where)]
    if match := re.fullmatch(r"Object contains unknown field `(.*)`", message, re.DOTALL):
        names = [f.name for m in _members(_type_at(tp, path)) if _is_struct(m)
                 for f in msgspec.structs.fields(m)]
        close = difflib.get_close_matches(match[1], names, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return path + [match[1]], "unknown key" + hint
    if match := re.fullmatch(r"Object missing required field `(.*)`", message, re.DOTALL):
        return path + [match[1]], "required key is missing"
    got = _show(reduce(operator.getitem, path, raw))
    if message.startswith("Invalid enum value"):
        values = [v for m in _members(_type_at(tp, path)) if get_origin(m) is Literal
                  for v in get_args(m)]
        choices = ", ".join(map(_show, values))
        return path, f"expected {'one of ' if len(values) > 1 else ''}{choices}, got {got}"
    message = re.sub(r"`([^`]*)`", lambda m: " or ".join(
        filter(None, (_TOML_TYPES.get(t, t) for t in m[1].split(" | ")))), message)
    message = message[0].lower() + message[1:]
    return path, message if ", got " in message else f"{message}, got {got}"
