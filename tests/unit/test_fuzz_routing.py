"""Fuzzing the router against DESIGN §4 as written, restated here as a small reference:
match segment by segment (a segment is equal, or a glob such as `*` matching it), a
pattern shorter than the key matches as a prefix, most literal segments wins, then the
earliest route; an unmatched thread falls back to its parent channel; else default_agent."""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import example, given
from hypothesis import strategies as st

from hermesd.routing import Router
from tests.unit._fuzz import FUZZ

# Few distinct segments, so that patterns and keys meet often.
segment = st.sampled_from(["", "*", "a", "b", "1", "-100", "dev-*", "ключ", "a?", "[ab]", "discord",
                           "thread", "channel"]) | st.text(max_size=3)
segments = st.lists(segment, min_size=1, max_size=6)
patterns = st.lists(st.tuples(segments.map(":".join), st.sampled_from(["p", "q", "r", "s"])),
                    max_size=6)
keys = segments.map(":".join) | st.builds(
    lambda g, c, t: f"discord:thread:{g}:{c}:{t}", segment, segment, segment)
default = st.none() | st.just("home")


def literal(segment: str) -> bool:
    return not any(char in segment for char in "*?[")


def reference(routes: list[tuple[str, str]], default_agent: str | None, key: str) -> str | None:
    def winner(key_segments: list[str]) -> str | None:
        candidates = []
        for order, (pattern, agent) in enumerate(routes):
            parts = pattern.split(":")
            if len(parts) <= len(key_segments) and all(
                p == k or fnmatchcase(k, p) for p, k in zip(parts, key_segments, strict=False)
            ):
                candidates.append((-sum(map(literal, parts)), order, agent))
        return min(candidates)[2] if candidates else None

    parts = key.split(":")
    agent = winner(parts)
    if agent is None and len(parts) == 5 and parts[:2] == ["discord", "thread"]:
        agent = winner(["discord", "channel", *parts[2:4]])
    return agent if agent is not None else default_agent


@FUZZ
@given(patterns, default, st.lists(keys, min_size=1, max_size=5))
@example([("discord:channel:1:2", "p")], None, ["discord:thread:1:2:3"])
@example([("local:*", "p"), ("local:x", "q")], None, ["local:x:y"])
@example([("[ab]", "p")], None, ["[ab]", "a"])
def test_router_agrees_with_design(routes: list, default_agent: str | None, keys_: list) -> None:
    router = Router(routes, default_agent)
    for key in keys_:
        assert router.resolve(key).agent == reference(routes, default_agent, key), key


@FUZZ
@given(patterns, st.text(max_size=20), st.integers(1, 20_000))
def test_any_key_resolves_without_error(routes: list, piece: str, repeat: int) -> None:
    """Long keys, many segments, any characters: a Route comes back."""
    router = Router(routes, "home")
    for key in (piece * repeat, ":".join([piece] * min(repeat, 2000)), ""):
        route = router.resolve(key)
        assert route.agent is not None and route.rule


@FUZZ
@given(segments, segments, patterns)
def test_the_keys_own_first_segments_route_it(key: list[str], tail: list[str], others: list) -> None:
    """A route written as the key's first segments routes it, unless a route with more
    literal segments (or as many, earlier in the file) matches too."""
    prefix = ":".join(key)
    router = Router([*others, (prefix, "mine")], None)
    route = router.resolve(":".join(key + tail))
    if route.agent != "mine":
        winner, _ = others[int(route.rule.split()[1][1:]) - 1]  # "route #N 'pattern'"
        assert sum(map(literal, winner.split(":"))) >= sum(map(literal, prefix.split(":")))


@FUZZ
@given(segment, segment, segment, st.sampled_from(["p", "q"]))
def test_thread_without_route_follows_its_parent_channel(guild: str, channel: str, thread: str,
                                                         agent: str) -> None:
    router = Router([(f"discord:channel:{guild}:{channel}", agent)], "home")
    route = router.resolve(f"discord:thread:{guild}:{channel}:{thread}")
    if ":" not in guild + channel + thread:
        assert route.agent == agent


@FUZZ
@given(patterns, keys)
def test_unmatched_key_goes_to_default_agent(routes: list, key: str) -> None:
    if Router(routes, None).resolve(key).agent is None:
        route = Router(routes, "home").resolve(key)
        assert (route.agent, route.rule) == ("home", "default_agent")
