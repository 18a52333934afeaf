"""Session keys, addressing and destinations of Telegram messages (DESIGN §4)."""

from __future__ import annotations

from typing import Any

from telegram import Bot, Message, Update

from hermesd.platforms import permitted
from hermesd.platforms.telegram_updates import addressed, destination, session_key

BOT_ID, BOT = 777, "hermes_bot"
_bot = Bot("777:TOKEN")


def message(chat: dict[str, Any], text: str = "hi", **extra: Any) -> Message:
    raw = {"message_id": 5, "date": 0, "chat": chat, "text": text,
           "from": {"id": 42, "is_bot": False, "first_name": "A"}, **extra}
    update = Update.de_json({"update_id": 1, "message": raw}, _bot)
    assert update is not None and update.message is not None
    return update.message


PRIVATE = {"id": 42, "type": "private"}
GROUP = {"id": -100, "type": "supergroup"}
FORUM = {"id": -200, "type": "supergroup", "is_forum": True}


def test_keys_for_each_kind_of_chat() -> None:
    assert session_key(message(PRIVATE), "per_user") == "telegram:dm:42"
    assert session_key(message(GROUP), "per_user") == "telegram:group:-100:42"
    assert session_key(message(GROUP), "shared") == "telegram:group:-100"
    topic = message(FORUM, is_topic_message=True, message_thread_id=9)
    assert session_key(topic, "per_user") == "telegram:topic:-200:9:42"
    assert session_key(topic, "shared") == "telegram:topic:-200:9"
    assert session_key(message(FORUM), "shared") == "telegram:topic:-200:1"  # General


def test_thread_id_alone_does_not_make_a_topic() -> None:
    reply_in_group = message(GROUP, message_thread_id=3)
    assert session_key(reply_in_group, "shared") == "telegram:group:-100"


def test_replies_go_back_to_the_same_chat_and_topic() -> None:
    assert destination("telegram:dm:42") == (42, None)
    assert destination("telegram:group:-100:42") == (-100, None)
    assert destination("telegram:topic:-200:9:42") == (-200, 9)
    assert destination("telegram:topic:-200:1") == (-200, None)  # General takes no thread id


def test_what_addresses_the_bot_in_a_group() -> None:
    assert addressed(message(GROUP, "/status"), BOT_ID, BOT)
    assert addressed(message(GROUP, "/status@hermes_bot"), BOT_ID, BOT)
    assert not addressed(message(GROUP, "/status@other_bot"), BOT_ID, BOT)
    assert addressed(message(GROUP, "hey @Hermes_Bot look"), BOT_ID, BOT)
    assert not addressed(message(GROUP, "just chatting"), BOT_ID, BOT)
    bot_said = {"message_id": 4, "date": 0, "chat": GROUP, "text": "earlier",
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "H"}}
    assert addressed(message(GROUP, "yes", reply_to_message=bot_said), BOT_ID, BOT)


def test_access_lists() -> None:
    assert permitted(42, [42]) and not permitted(43, [42]) and not permitted(42, [])
    assert permitted(12345, "*") and not permitted(1, "everyone")
