"""How the hermes runtime's /memory and /model answer (workers/runtimes/hermes_commands.py)."""

from __future__ import annotations

from workers.runtimes import hermes_commands as commands


def test_memory_reply_fits_one_chat_message() -> None:
    answer = commands.memory_reply(["x" * 1000] * 20, ["y" * 1000] * 20)
    assert len(answer) < 4096 and answer.endswith("memories/)")
    assert "x" * commands.ENTRY_CHARS not in answer  # each entry is cut too


def test_memory_reply_with_no_memories_says_so() -> None:
    assert commands.memory_reply([], []) == "No memories yet."


def test_command_word_drops_the_bot_name() -> None:
    assert commands.command_word("/Model@hermes_bot gpt-4o") == "/model"
    assert commands.argument("/Model@hermes_bot gpt-4o") == "gpt-4o"


def test_model_reply_keeps_the_model_for_a_bad_name() -> None:
    wanted, reply = commands.model_reply("big", "big", "two words")
    assert wanted is None and "stays big" in reply
