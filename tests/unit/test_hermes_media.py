"""`MEDIA:` lines in a hermes agent's answer: which lines are files, and what is left of
the text (the daemon-level behaviour is in tests/integration/test_hermes_hd_tools.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from workers.runtimes.hermes_tools import attach_media
from workers.workspace import Workspace


@pytest.fixture
def context(tmp_path: Path) -> SimpleNamespace:
    """What send_file uses of a turn's ToolContext: the workspace and the files list."""
    space = Workspace(tmp_path / "agent", ())
    space.ensure()
    (space.root / "a.png").write_bytes(b"png")
    (space.root / "notes.txt").write_text("notes")
    return SimpleNamespace(workspace=space, files=[])


def attach(text: str, context: SimpleNamespace) -> str:
    return anyio.run(attach_media, text, context)


def test_media_lines_become_files_and_leave_the_text(context: SimpleNamespace) -> None:
    root = context.workspace.root
    (root / "my notes.txt").write_text("notes")
    text = f"Three files.\nMEDIA:{root}/a.png\n  `MEDIA: {root}/notes.txt`\nMEDIA:'{root}/my notes.txt'\nBye."
    assert attach(text, context) == "Three files.\nBye."
    assert context.files == [str(root / name) for name in ("a.png", "notes.txt", "my notes.txt")]


def test_home_relative_media_path_is_in_the_workspace(
    context: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(context.workspace.root))  # as in a hermes worker
    assert attach("MEDIA:~/a.png", context) == ""
    assert context.files == [str(context.workspace.root / "a.png")]


def test_media_in_a_code_block_or_inside_a_sentence_is_text(context: SimpleNamespace) -> None:
    root = context.workspace.root
    text = f"Write it like this:\n```\nMEDIA:{root}/a.png\n```\nsee MEDIA:{root}/a.png here\nMEDIA: is a tag"
    assert attach(text, context) == text
    assert context.files == []


def test_missing_file_leaves_a_note(context: SimpleNamespace) -> None:
    root = context.workspace.root
    answer = attach(f"Here.\nMEDIA:{root}/gone.pdf", context)
    assert answer == f"Here.\n(file not sent: {root}/gone.pdf is not a file)"
    assert context.files == []
