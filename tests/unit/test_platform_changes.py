"""Which platforms a reload restarts: those whose [platforms.*] table changed (one added or
removed counts) and bots whose token file now holds another token."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hermesd.config import Platforms, loads
from hermesd.platforms.host import changed

AGENT = '[agents.a]\nruntime = "echo"\n'


def platforms(text: str) -> Platforms:
    return loads(AGENT + text).platforms


def telegram(token_file: Path, allowed: str = "[1]") -> str:
    return f'[platforms.telegram]\ntoken_file = "{token_file}"\nallowed_users = {allowed}\n'


def running(**tokens: str) -> dict[str, Any]:
    """Adapters as `changed` sees them: by name, with the token each started with."""
    return {name: SimpleNamespace(token=token) for name, token in tokens.items()}


def test_same_tables_restart_nothing(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("111:a")
    text = telegram(tmp_path / "t") + '[platforms.local]\nsocket = "/run/x.sock"\n'
    assert changed(platforms(text), platforms(text), running(telegram="111:a")) == {}


def test_changed_allowed_users_restart_telegram_alone(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("111:a")
    old, new = platforms(telegram(tmp_path / "t")), platforms(telegram(tmp_path / "t", "[1, 2]"))
    assert changed(old, new, running(telegram="111:a")) == {"telegram": "settings changed"}


def test_added_and_removed_tables_count(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("111:a")
    with_bot, without = platforms(telegram(tmp_path / "t")), platforms("")
    assert changed(without, with_bot, {}) == {"telegram": "settings changed"}
    assert changed(with_bot, without, running(telegram="111:a")) == {"telegram": "settings changed"}


def test_disabled_local_platform_ignores_its_other_keys() -> None:
    old = platforms('[platforms.local]\nenabled = false\nsocket = "/run/a.sock"\n')
    new = platforms('[platforms.local]\nenabled = false\nsocket = "/run/b.sock"\n')
    assert changed(old, new, {}) == {}
    assert changed(platforms(""), new, {}) == {"local": "settings changed"}


def test_token_replaced_in_its_file_restarts_the_bot(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("111:new\n")
    same = platforms(telegram(tmp_path / "t"))
    assert changed(same, same, running(telegram="111:old")) == {"telegram": "token changed"}


def test_unreadable_token_file_keeps_the_bot_running(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("111:a")
    same = platforms(telegram(tmp_path / "t"))
    (tmp_path / "t").unlink()
    assert changed(same, same, running(telegram="111:a")) == {}
