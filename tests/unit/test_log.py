"""Secrets never reach a log line, wherever they appear in it."""

from __future__ import annotations

import pytest

from hermesd import log

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"  # the shape of a Telegram bot token


@pytest.mark.parametrize("text", [
    TOKEN,
    f"https://api.telegram.org/bot{TOKEN}/getUpdates",
    f"ConnectError: url='https://api.telegram.org/file/bot{TOKEN}/photos/1.jpg' failed",
    f"token={TOKEN}, retrying",
])
def test_telegram_bot_tokens_are_masked_even_inside_urls(text: str) -> None:
    assert TOKEN.split(":")[1] not in log.redact(text)
    assert "[redacted]" in log.redact(text)


def test_registered_secrets_are_masked() -> None:
    log.add_secret("discord-secret-value")
    assert log.redact("Authorization: Bot discord-secret-value") == "Authorization: Bot [redacted]"


def test_ordinary_numbers_with_colons_are_kept() -> None:
    text = "level=info event=agent_running agent=a pid=1234 at 12:30:00"
    assert log.redact(text) == text
