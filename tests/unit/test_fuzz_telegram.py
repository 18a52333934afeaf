"""Fuzzing the Telegram adapter's per-update step (`parse_update`): getUpdates items of
every shape, then damaged; each gives a message with a DESIGN §4 session key, or a skip."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from telegram import Bot

from hermesd.config import TelegramConfig
from hermesd.platforms import permitted
from hermesd.platforms.telegram_updates import (
    KEY,
    Parsed,
    Skip,
    destination,
    parse_update,
)
from tests.unit._fuzz import FUZZ

BOT_ID, BOT_NAME = 777, "hermes_bot"
_bot = Bot("777:TOKEN")

ids = st.integers(-(10**13), 10**13)
texts = st.text(max_size=30) | st.sampled_from(["/start", "/new@hermes_bot", "/x@other_bot",
                                                "hi @Hermes_Bot", "@hermes_bot"])
users = st.fixed_dictionaries({"id": ids, "is_bot": st.booleans(), "first_name": st.text(max_size=5)},
                              optional={"username": st.text(max_size=8)})
chats = st.fixed_dictionaries(
    {"id": ids, "type": st.sampled_from(["private", "group", "supergroup", "channel"])},
    optional={"is_forum": st.booleans(), "title": st.text(max_size=5)})
files = {"file_id": st.text(min_size=1, max_size=6), "file_unique_id": st.text(min_size=1, max_size=6)}
documents = st.fixed_dictionaries(files, optional={"file_name": st.text(max_size=10),
                                                   "file_size": st.integers(0, 10**9),
                                                   "mime_type": st.just("text/plain")})
photos = st.lists(st.fixed_dictionaries({**files, "width": st.integers(1, 99), "height": st.integers(1, 99)},
                                        optional={"file_size": st.integers(0, 10**9)}), min_size=1, max_size=3)
entities = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["mention", "bot_command", "bold"]),
                                           "offset": st.integers(0, 30), "length": st.integers(1, 30)}),
                    max_size=2)
OPTIONAL = {"text": texts, "caption": texts, "message_thread_id": st.integers(1, 10**6),
            "is_topic_message": st.booleans(), "entities": entities, "caption_entities": entities,
            "document": documents, "photo": photos}


@st.composite
def messages(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    message = {"message_id": draw(st.integers(1, 10**9)), "date": draw(st.integers(0, 2**31)),
               "chat": draw(chats), "from": draw(users)}
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True)):
        message[key] = draw(OPTIONAL[key])
    if depth and draw(st.booleans()):
        message["reply_to_message"] = draw(messages(depth=0))
    return message


odd = st.sampled_from([None, "", "x", "-100", 0, -1, True, 1.5, 2**70, [], [1], {}, {"id": "1"}])


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a raw update, to damage one of them."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, prefix + (i,))
    return out


@st.composite
def damaged_updates(draw: st.DrawFn) -> dict[str, Any]:
    update = {"update_id": 1, "message": draw(messages())}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(update["message"])))
        parent = update["message"]
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(odd))  # a later step may damage it in place
    return update


def settings_(group_sessions: str = "per_user", require_mention: bool = True) -> TelegramConfig:
    return TelegramConfig(token_env="T", group_sessions=group_sessions,
                          require_mention_in_groups=require_mention)


modes = st.builds(settings_, st.sampled_from(["per_user", "shared"]), st.booleans())


def checked(raw: dict[str, Any], settings: TelegramConfig) -> Parsed | Skip:
    """parse_update's promise: a message the adapter can key, answer and spool, or a skip."""
    parsed = parse_update(raw, _bot, settings, BOT_ID, BOT_NAME)
    if isinstance(parsed, Skip):
        assert parsed.reason
        return parsed
    assert KEY.fullmatch(parsed.session_key), parsed.session_key
    private = parsed.session_key.startswith("telegram:dm:")  # a private chat's id is its user's
    assert destination(parsed.session_key)[0] == (parsed.sender if private else parsed.message.chat.id)
    assert isinstance(parsed.text, str) and isinstance(parsed.message.message_id, int)
    permitted(parsed.sender, [parsed.sender])
    return parsed


@FUZZ
@given(messages(), modes)
@example({"message_id": 1, "date": 0, "chat": {"id": -5, "type": "supergroup", "is_forum": True},
          "from": {"id": 2, "is_bot": False, "first_name": "A"}, "is_topic_message": True},
         settings_(require_mention=False))  # a topic message without its thread id
def test_well_formed_update_gives_a_message_or_a_plain_skip(message: dict, settings: TelegramConfig) -> None:
    parsed = checked({"update_id": 1, "message": message}, settings)
    if isinstance(parsed, Skip):
        assert parsed.reason == "not addressed to the bot" and not parsed.malformed
    else:
        assert parsed.sender == message["from"]["id"]


@FUZZ
@given(damaged_updates(), modes)
@example({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": "-1", "type": "group"},
                                      "from": {"id": 2, "is_bot": False, "first_name": "A"}}},
         settings_(require_mention=False))  # a chat id that is a string
@example({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                      "from": {"id": 2, "is_bot": False, "first_name": "A"}, "text": 5}},
         settings_())  # text that is a number
@example({"update_id": 1, "message": {"message_id": "/../../x", "date": 0, "chat": {"id": 1, "type": "private"},
                                      "from": {"id": 2, "is_bot": False, "first_name": "A"}}},
         settings_())  # a message id that would become part of a file path
@example({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                      "from": {"id": 2, "is_bot": False, "first_name": "A"},
                                      "document": {"file_id": "f", "file_unique_id": "u", "file_size": "9"}}},
         settings_())  # a file size that is a string
def test_damaged_update_gives_a_keyed_message_or_a_skip(raw: dict, settings: TelegramConfig) -> None:
    checked(raw, settings)


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                             max_size=5),
                    max_leaves=20), modes)
def test_any_json_as_the_message_gives_a_keyed_message_or_a_skip(raw: Any, settings: TelegramConfig) -> None:
    checked({"update_id": 1, "message": raw}, settings)


def test_chat_id_that_is_not_a_number_is_skipped_as_malformed() -> None:
    raw = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": "-1", "type": "group"},
                                       "from": {"id": 2, "is_bot": False, "first_name": "A"}, "text": "hi"}}
    parsed = parse_update(raw, _bot, settings_(require_mention=False), BOT_ID, BOT_NAME)
    assert isinstance(parsed, Skip) and parsed.malformed
