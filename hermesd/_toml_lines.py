"""Find the source line of a key in a TOML text.

tomlkit parses the config but does not say on which line a value was written, and
msgspec reports errors as paths (`$.runtime`).  Error messages must name a line, so this
module scans the text once and records, for every table header and `key = value`, the
line where that key path is written.  It only has to understand what locates a key:
headers, array-of-tables indices, dotted and quoted keys, and enough of the values
(strings, multi-line arrays) not to mistake their contents for keys.
"""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

KeyPath = tuple[str | int, ...]
"""Table names and keys, with an int for the element of an array of tables."""

_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"\s*(\[\[|\[)\s*({_DOTTED})\s*(\]\]|\])")
_ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)


class Duplicate(NamedTuple):
    path: KeyPath
    line: int
    first_line: int


def _split(dotted: str) -> list[str]:
    """`a."b.c".'d'` -> ["a", "b.c", "d"]."""
    parts = []
    for part in _PART.findall(dotted):
        if part.startswith('"'):
            try:  # TOML basic-string escapes are a subset of Python's
                part = ast.literal_eval(part)
            except (SyntaxError, ValueError):  # not valid TOML either: tomlkit reports it
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return parts


def _scan_value(line: str, i: int, depth: int, quote: str | None) -> tuple[int, str | None]:
    """Walk a value from `line[i:]`; return the bracket depth and the multi-line string
    still open at the end of the line, so the next lines are known to be continuations."""
    while i < len(line):
        if quote:
            if quote[0] == '"' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif line.startswith(('"""', "'''"), i):
            quote = line[i : i + 3]
            i += 3
            continue
        elif line[i] in "\"'":
            quote = line[i]
        elif line[i] == "#":
            break
        elif line[i] in "[{":
            depth += 1
        elif line[i] in "]}":
            depth -= 1
        i += 1
    return depth, quote if quote and len(quote) == 3 else None


def editor_line(text: str, line: int, col: int) -> int:
    """tomlkit's (line, col) counts lines as `str.splitlines` does, so "\\r", "\\x0c" or
    "\\u2028" end a line for it; editors and `KeyLines` count only "\\n"."""
    offset = sum(len(part) for part in text.splitlines(keepends=True)[: line - 1]) + col
    return text.count("\n", 0, offset) + 1


class KeyLines:
    """Line numbers of the key paths written in one TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicate: Duplicate | None = None
        """The first key or table defined twice, if any (tomlkit reports it late)."""
        self._defined: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        table: KeyPath = ()
        depth, quote = 0, None
        for lineno, line in enumerate(text.split("\n"), 1):
            if depth > 0 or quote:
                depth, quote = _scan_value(line, 0, depth, quote)
            elif match := _HEADER.match(line):
                is_array = match[1] == "[["
                table = self._resolve(_split(match[2]), is_array)
                self._note(table, lineno, define=not is_array)
            elif match := _ASSIGN.match(line):
                self._note(table + tuple(_split(match[1])), lineno, define=True)
                depth, quote = _scan_value(line, match.end(), 0, None)

    def line_of(self, path: KeyPath) -> int:
        """Line of the deepest part of `path` that is written in the text, else 1."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def _resolve(self, parts: list[str], is_array: bool) -> KeyPath:
        """Header names -> key path; a name that is an array of tables means its last element."""
        path: KeyPath = ()
        for n, part in enumerate(parts, 1):
            path += (part,)
            if is_array and n == len(parts):
                self._arrays[path] = self._arrays.get(path, 0) + 1
            if path in self._arrays:
                path += (self._arrays[path] - 1,)
        return path

    def _note(self, path: KeyPath, lineno: int, *, define: bool) -> None:
        for n in range(1, len(path)):
            self.lines.setdefault(path[:n], lineno)
        self.lines[path] = lineno
        if not define:
            return
        if path in self._defined:
            if self.duplicate is None:
                self.duplicate = Duplicate(path, lineno, self._defined[path])
        else:
            self._defined[path] = lineno
