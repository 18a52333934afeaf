"""What a Telegram message means for hermesd: its session key, whether the bot was
addressed, who may talk, and where a reply goes.  Pure functions over PTB objects, so the
adapter stays about I/O and these rules can be tested (and fuzzed) on their own.
"""

from __future__ import annotations

from telegram import Message

GENERAL_TOPIC = 1  # a forum's General topic: messages there carry no thread id


def session_key(message: Message, group_sessions: str) -> str:
    """DESIGN §4.  A forum topic is known from `is_topic_message` on a forum chat, never
    from `message_thread_id` alone (replies in ordinary groups carry thread ids too)."""
    chat, user = message.chat, message.from_user
    user_id = user.id if user else 0
    if chat.type == chat.PRIVATE:
        return f"telegram:dm:{user_id}"
    if chat.is_forum:
        topic = message.message_thread_id if message.is_topic_message else GENERAL_TOPIC
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
    text = message.text or message.caption or ""
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
