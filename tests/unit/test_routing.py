"""Route matching as DESIGN §4 states it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hermesd.routing import Router

ROUTES = [
    ("telegram:topic:-1001:101", "coder"),
    ("telegram:group:-1002", "team"),
    ("telegram:dm:*", "dm"),
    ("discord:channel:111:*", "cs"),
    ("discord:channel:111:222", "support"),
    ("discord:dm", "discord-dm"),
    ("local:dev-*", "dev"),
    ("agent:*:coder", "coder"),
]


def route(key: str, default: str | None = "home") -> str | None:
    return Router(ROUTES, default).resolve(key).agent


def test_each_key_form_reaches_its_agent() -> None:
    assert route("telegram:dm:42") == "dm"
    assert route("telegram:group:-1002:7") == "team"  # prefix: every user in the group
    assert route("telegram:group:-1002") == "team"  # shared group session
    assert route("telegram:topic:-1001:101") == "coder"
    assert route("telegram:topic:-1001:101:7") == "coder"  # per-user key in that topic
    assert route("discord:dm:9") == "discord-dm"
    assert route("discord:channel:111:333") == "cs"
    assert route("local:dev-alice") == "dev"
    assert route("agent:cs:coder") == "coder"


def test_most_literal_pattern_wins_over_earlier_glob() -> None:
    assert route("discord:channel:111:222") == "support"
    assert route("discord:channel:111:222:5") == "support"


def test_equal_specificity_goes_to_the_earliest_route() -> None:
    router = Router([("local:*", "first"), ("local:*", "second")], None)
    assert router.resolve("local:x").agent == "first"


def test_thread_without_route_goes_where_its_parent_channel_goes() -> None:
    assert route("discord:thread:111:222:999") == "support"
    assert route("discord:thread:111:333:999") == "cs"
    routed = Router(ROUTES + [("discord:thread:111:222:999", "thready")], None)
    assert routed.resolve("discord:thread:111:222:999").agent == "thready"


def test_unmatched_key_goes_to_default_agent_or_nowhere() -> None:
    assert route("telegram:topic:-1009:5") == "home"
    assert Router(ROUTES, "home").resolve("telegram:topic:-1009:5").rule == "default_agent"
    assert route("telegram:topic:-1009:5", default=None) is None


def test_pattern_longer_than_key_does_not_match() -> None:
    assert route("telegram:topic:-1001") == "home"


def test_star_matches_exactly_one_segment() -> None:
    router = Router([("agent:*:coder", "coder")], None)
    assert router.resolve("agent:a:b:coder").agent is None


def test_rule_names_the_route_that_matched() -> None:
    assert Router(ROUTES, None).resolve("telegram:dm:1").rule == "route #3 'telegram:dm:*'"


segment = st.text(alphabet="abc123-", min_size=1, max_size=4)


@given(st.lists(segment, min_size=1, max_size=6), st.lists(segment, min_size=1, max_size=6))
def test_a_literal_prefix_of_the_key_always_matches(key: list[str], other: list[str]) -> None:
    """Any leading slice of a key, used as a pattern, routes that key."""
    for cut in range(1, len(key) + 1):
        router = Router([(":".join(other), "other"), (":".join(key[:cut]), "prefix")], None)
        agent = router.resolve(":".join(key)).agent
        assert agent == "prefix" or (agent == "other" and len(other) >= cut)


def test_started_thread_keeps_its_channel_routes_reply_in_thread() -> None:
    """A thread `reply_in_thread` started is routed as its channel, so it keeps the setting."""
    router = Router([("discord:channel:111:222", "support", None, None, True)], None)
    assert router.resolve("discord:thread:111:222:999").reply_in_thread is True
    assert router.resolve("discord:channel:111:333").reply_in_thread is None
