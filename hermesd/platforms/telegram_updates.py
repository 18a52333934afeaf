"""What a Telegram message means for hermesd: its session key, whether the bot was
addressed, who may talk, and where a reply goes.  Pure functions over PTB objects, so the
adapter stays about I/O and these rules can be tested (and fuzzed) on their own.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from telegram import Bot, Document, Message, PhotoSize, Update

from hermesd.config import TelegramConfig
from hermesd.platforms import Skip

GENERAL_TOPIC = 1  # a forum's General topic: messages there carry no thread id
KEY = re.compile(r"telegram:(?:dm:-?[0-9]+|(?:group:-?[0-9]+|topic:-?[0-9]+:-?[0-9]+)(?::-?[0-9]+)?)")
"""DESIGN §4's grammar of Telegram session keys."""


class Parsed(NamedTuple):
    """One update that may go to an agent (whether its sender may talk is the router's)."""

    message: Message
    session_key: str
    sender: int
    text: str
    attachment: Document | PhotoSize | None


def parse_update(raw: dict[str, Any], bot: Bot, settings: TelegramConfig, bot_id: int,
                 bot_username: str) -> Parsed | Skip:
    """A raw getUpdates item -> what the adapter acts on, or why not.  PTB's `de_json`
    checks no types, so every field used later is checked here: one odd update is
    skipped, and never reaches a key, a path or a reply as something else."""
    try:
        update = Update.de_json(raw, bot)
    except Exception as exc:  # PTB raises whatever its constructors meet
        return Skip(f"unparsable: {type(exc).__name__}: {exc}", malformed=True)
    message = update.message if update else None
    if message is None:
        return Skip("not a message")
    user, chat = message.from_user, message.chat
    if user is None:
        return Skip("no sender")
    if not (_is_id(message.message_id) and _is_id(user.id) and _is_id(getattr(chat, "id", None))):
        return Skip("malformed: message, sender or chat id is not an integer", malformed=True)
    key = session_key(message, settings.group_sessions)
    if not KEY.fullmatch(key):
        return Skip(f"malformed: session key {key!r}", malformed=True)
    attachment = message.document or (message.photo[-1] if message.photo else None)
    if attachment is not None and not _is_file(attachment):
        return Skip("malformed: attachment", malformed=True)
    if not is_private(key) and settings.require_mention_in_groups and \
            not addressed(message, bot_id, bot_username):
        return Skip("not addressed to the bot")
    return Parsed(message, key, user.id, text_of(message), attachment)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_file(attachment: object) -> bool:
    size, name = getattr(attachment, "file_size", None), getattr(attachment, "file_name", None)
    return isinstance(attachment, (Document, PhotoSize)) and \
        isinstance(attachment.file_unique_id, str) and (size is None or _is_id(size)) and \
        isinstance(name, (str, type(None)))


def text_of(message: Message) -> str:
    """The text or caption; "" when neither is a string."""
    for text in (message.text, message.caption):
        if isinstance(text, str) and text:
            return text
    return ""


def session_key(message: Message, group_sessions: str) -> str:
    """DESIGN §4.  A forum topic is known from `is_topic_message` on a forum chat, never
    from `message_thread_id` alone (replies in ordinary groups carry thread ids too)."""
    chat, user = message.chat, message.from_user
    user_id = user.id if user else 0
    if chat.type == chat.PRIVATE:
        return f"telegram:dm:{user_id}"
    if chat.is_forum:
        thread = message.message_thread_id if message.is_topic_message else None
        topic = thread or GENERAL_TOPIC  # a topic message without its thread id: General
        base = f"telegram:topic:{chat.id}:{topic}"
    else:
        base = f"telegram:group:{chat.id}"
    return base if group_sessions == "shared" else f"{base}:{user_id}"


def destination(session_key: str) -> tuple[int, int | None]:
    """(chat id, message_thread_id or None) that replies in this conversation go to."""
    parts = session_key.split(":")
    chat = int(parts[2])
    if parts[1] == "topic":
        topic = int(parts[3])
        return chat, None if topic == GENERAL_TOPIC else topic
    return chat, None


def addressed(message: Message, bot_id: int, bot_username: str) -> bool:
    """In a group, was this message meant for the bot: a command (not one for another
    bot), an @mention, or a reply to one of the bot's messages?"""
    text = text_of(message)
    mention = f"@{bot_username}".lower()
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        return "@" not in command or command.lower().endswith(mention)
    if mention in text.lower():
        return True
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == bot_id)


def is_private(session_key: str) -> bool:
    return session_key.startswith("telegram:dm:")
