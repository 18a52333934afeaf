"""The pure half of Discord's `reply_in_thread`: the key and the name of a thread to start."""

from __future__ import annotations

from hermesd.platforms.discord import destination
from hermesd.platforms.discord_threads import DEFAULT_NAME, thread_key, thread_name


def test_thread_key_names_the_message_and_its_channel_whatever_the_user():
    assert thread_key("discord:channel:10:101:501", 777) == "discord:thread:10:101:777"
    assert thread_key("discord:channel:10:101", 777) == "discord:thread:10:101:777"


def test_replies_for_the_thread_key_go_to_the_thread_that_has_the_message_id():
    assert destination(thread_key("discord:channel:10:101", 777)) == ("channel", 777)


def test_thread_name_is_the_first_fifty_characters_on_one_line():
    assert thread_name("  short\nquestion ") == "short question"
    assert thread_name("x" * 80) == "x" * 50 + "…"


def test_thread_without_text_has_the_default_name():
    assert thread_name(" \n") == DEFAULT_NAME
