"""Fuzzing the Discord adapter's message step (`parse_message`) on discord.py `Message`s
built from generated MESSAGE_CREATE payloads exactly as discord.py's ConnectionState
builds them: a DESIGN §4 session key that replies can follow back, or a Skip."""

from __future__ import annotations

import copy
import re
from typing import Any

import discord
from hypothesis import example, given
from hypothesis import strategies as st

from hermesd.config import DiscordConfig
from hermesd.platforms import Skip
from hermesd.platforms.discord import Parsed, destination, parse_message
from tests.unit._fuzz import FUZZ

BOT, GUILD, CHANNEL, THREAD, UNCACHED_GUILD = 900, 100, 200, 300, 400
KEY = re.compile(r"discord:(?:dm:[0-9]+|channel:[0-9]+:[0-9]+(?::[0-9]+)?|thread:[0-9]+:[0-9]+:[0-9]+)")


def user(user_id: int, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": f"u{user_id}", "discriminator": "0", "avatar": None,
            "global_name": None, "bot": bot}


def connection() -> Any:
    """discord.py's cache, as after GUILD_CREATE for one guild with a channel and a thread."""
    state = discord.Client(intents=discord.Intents.default())._connection
    channel = {"id": str(CHANNEL), "type": 0, "guild_id": str(GUILD), "name": "c", "position": 0,
               "permission_overwrites": [], "nsfw": False, "parent_id": None}
    thread = {"id": str(THREAD), "type": 11, "guild_id": str(GUILD), "parent_id": str(CHANNEL),
              "owner_id": "1", "name": "t", "message_count": 0, "member_count": 1,
              "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                  "archive_timestamp": "2024-01-01T00:00:00+00:00"}}
    state._add_guild_from_data({
        "id": str(GUILD), "name": "g", "owner_id": "1", "unavailable": False, "member_count": 1,
        "roles": [{"id": str(GUILD), "name": "@everyone", "permissions": "0", "position": 0}],
        "channels": [channel], "threads": [thread], "emojis": [], "stickers": [], "features": [],
        "members": [], "voice_states": [], "presences": []})
    return state


STATE = connection()

ids = st.integers(1, 2**63 - 1)
places = st.sampled_from([(None, 555), (GUILD, CHANNEL), (GUILD, THREAD), (UNCACHED_GUILD, 777)])


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    guild, channel = draw(places)
    author = draw(ids)
    data: dict[str, Any] = {
        "id": str(draw(ids)), "channel_id": str(channel), "type": 0, "author": user(author, draw(st.booleans())),
        "content": draw(st.text(max_size=20) | st.just(f"<@{BOT}> hi") | st.just(f"<@!{BOT}>")),
        "attachments": [], "embeds": [], "mention_roles": [], "mention_everyone": False, "pinned": False,
        "tts": False, "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "flags": 0,
        "mentions": [user(u) for u in draw(st.lists(st.sampled_from([BOT, author, 5]), max_size=2))],
    }
    if guild is not None:
        data["guild_id"] = str(guild)
    if draw(st.booleans()):
        replied = {**data, "id": str(draw(ids)), "author": user(draw(st.sampled_from([BOT, 5])))}
        data["message_reference"] = {"message_id": replied["id"], "channel_id": str(channel)}
        data["referenced_message"] = replied if draw(st.booleans()) else None
    return data


odd = st.sampled_from([None, "", "x", 0, -1, True, 1.5, [], {}, "1" * 30])


@st.composite
def damaged_payloads(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(payloads())
    key = draw(st.sampled_from(sorted(data)))
    if draw(st.booleans()):
        del data[key]
    else:
        data[key] = copy.deepcopy(draw(odd))  # not the shared constant: the parsers may change it
    return data


def message_of(data: dict[str, Any]) -> discord.Message | None:
    """ConnectionState.parse_message_create without the dispatch; None where discord.py
    itself refuses the payload (before hermesd sees anything)."""
    try:
        channel, _ = STATE._get_guild_channel(data)
        return discord.Message(channel=channel, data=data, state=STATE)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def checked(message: discord.Message, settings: DiscordConfig) -> Parsed | Skip:
    parsed = parse_message(message, settings, BOT)
    if isinstance(parsed, Skip):
        assert parsed.reason
        return parsed
    assert KEY.fullmatch(parsed.session_key), parsed.session_key
    kind, target = destination(parsed.session_key)
    assert (kind, target) == (("dm", message.author.id) if not parsed.in_guild else
                              ("channel", message.channel.id))
    assert isinstance(parsed.text, str) and f"<@{BOT}>" not in parsed.text
    return parsed


modes = st.builds(lambda s, g: DiscordConfig(token_env="T", channel_sessions=s, allowed_guilds=g),
                  st.sampled_from(["per_user", "shared"]), st.sampled_from([[], [GUILD], [UNCACHED_GUILD]]))


@FUZZ
@given(payloads(), modes)
def test_message_gives_a_keyed_message_or_a_skip(data: dict[str, Any], settings: DiscordConfig) -> None:
    message = message_of(data)
    assert message is not None
    parsed = checked(message, settings)
    if isinstance(parsed, Parsed):
        assert parsed.in_guild == ("guild_id" in data)
        assert parsed.addressed == (any(m["id"] == str(BOT) for m in data["mentions"]) or (
            (data.get("referenced_message") or {}).get("author", {}).get("id") == str(BOT)))
    else:
        assert not parsed.malformed
        assert data["author"]["bot"] or int(data.get("guild_id", 0)) not in settings.allowed_guilds


@FUZZ
@given(damaged_payloads(), modes)
@example({"id": "1", "channel_id": str(CHANNEL), "guild_id": str(GUILD), "type": 0, "author": user(2),
          "content": 5, "attachments": [], "embeds": [], "mentions": [], "mention_roles": [],
          "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None},
         DiscordConfig(token_env="T"))  # content that is not a string
@example({"id": "1", "channel_id": "555", "type": 0, "content": "hi", "attachments": [], "embeds": [],
          "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None},
         DiscordConfig(token_env="T"))  # no author, no mentions: discord.py leaves them unset
def test_damaged_payload_gives_a_keyed_message_or_a_skip(data: dict[str, Any], settings: DiscordConfig) -> None:
    message = message_of(data)
    if message is not None:
        checked(message, settings)


def test_negative_guild_id_is_skipped_as_malformed() -> None:
    data = {"id": "1", "channel_id": "777", "guild_id": "-1", "type": 0, "author": user(2),
            "content": "hi", "attachments": [], "embeds": [], "mentions": [], "mention_roles": [],
            "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None}
    parsed = parse_message(message_of(data), DiscordConfig(token_env="T"), BOT)
    assert isinstance(parsed, Skip) and parsed.malformed


def test_message_from_a_guild_not_cached_is_not_taken_for_a_dm() -> None:
    data = {"id": "1", "channel_id": "777", "guild_id": str(UNCACHED_GUILD), "type": 0, "author": user(2),
            "content": "hi", "attachments": [], "embeds": [], "mentions": [], "mention_roles": [],
            "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None}
    message = message_of(data)
    assert message is not None and message.guild is None  # what discord.py gives
    parsed = parse_message(message, DiscordConfig(token_env="T"), BOT)
    assert isinstance(parsed, Parsed) and parsed.session_key == f"discord:channel:{UNCACHED_GUILD}:777:2"
    assert parsed.in_guild
