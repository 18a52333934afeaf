"""Session keys and route matching (DESIGN §4).

A session key names one conversation (`telegram:topic:-100123:101:42`).  Routes are patterns
over the key's ':'-separated segments; the most literal pattern wins, then the earliest.
Resolution is pure and cached per key, so the hot path is one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

_GLOB_CHARS = frozenset("*?[")


def _is_literal(segment: str) -> bool:
    return _GLOB_CHARS.isdisjoint(segment)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One route: `segments` are matched one to one against the key's leading segments."""

    text: str
    agent: str
    order: int
    segments: tuple[str, ...]
    literal_count: int
    allowed_users: object = None  # a platform's allowed_users override, if the route has one
    require_mention: bool | None = None  # a platform's mention rule override
    reply_in_thread: bool | None = None  # Discord's reply_in_thread override

    @classmethod
    def parse(cls, text: str, agent: str, order: int, allowed_users: object = None,
              require_mention: bool | None = None, reply_in_thread: bool | None = None) -> Pattern:
        segments = tuple(text.split(":"))
        return cls(text, agent, order, segments, sum(map(_is_literal, segments)), allowed_users,
                   require_mention, reply_in_thread)

    def matches(self, key_segments: Sequence[str]) -> bool:
        if len(self.segments) > len(key_segments):
            return False
        for pattern, actual in zip(self.segments, key_segments):  # noqa: B905 (a prefix)
            if pattern == actual:
                continue
            if _is_literal(pattern) or not fnmatchcase(actual, pattern):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Route:
    """Where a key goes and why; `rule` is what `hermesctl routes` and the logs show."""

    agent: str | None
    rule: str
    allowed_users: object = None  # the matching route's override of the platform's list
    require_mention: bool | None = None
    reply_in_thread: bool | None = None


class Router:
    """Maps session keys to agent ids.  Immutable: a reload builds a new Router."""

    def __init__(self, routes: Iterable[tuple[str, ...]], default_agent: str | None) -> None:
        """`routes`: (pattern, agent[, allowed_users[, require_mention[, reply_in_thread]]]),
        in file order."""
        self.patterns = tuple(
            Pattern.parse(*route[:2], order, *route[2:]) for order, route in enumerate(routes)
        )
        self.default_agent = default_agent
        self._cache: dict[str, Route] = {}

    def resolve(self, session_key: str) -> Route:
        route = self._cache.get(session_key)
        if route is None:
            route = self._cache[session_key] = self._resolve(session_key)
        return route

    def _best(self, key_segments: Sequence[str]) -> Pattern | None:
        best: Pattern | None = None
        for pattern in self.patterns:
            if pattern.matches(key_segments) and (
                best is None or pattern.literal_count > best.literal_count
            ):
                best = pattern
        return best

    def _resolve(self, session_key: str) -> Route:
        segments = session_key.split(":")
        best = self._best(segments)
        if best is None and (parent := thread_parent(segments)) is not None:
            best = self._best(parent)
        if best is not None:
            return Route(best.agent, f"route #{best.order + 1} {best.text!r}", best.allowed_users,
                         best.require_mention, best.reply_in_thread)
        if self.default_agent is not None:
            return Route(self.default_agent, "default_agent")
        return Route(None, "no route and no default_agent")


def thread_parent(segments: Sequence[str]) -> tuple[str, ...] | None:
    """`discord:thread:<guild>:<channel>:<thread>` -> `discord:channel:<guild>:<channel>`."""
    if len(segments) == 5 and segments[0] == "discord" and segments[1] == "thread":
        return ("discord", "channel", segments[2], segments[3])
    return None
