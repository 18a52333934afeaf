"""The man pages stay true to the code: every config key is documented in hermesd.toml(5)
under its table (and nothing documented there is gone from the code), and every page
renders without a warning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from hermesd import config

MAN = Path(__file__).resolve().parents[2] / "man"
TABLES = {
    "[daemon]": config.DaemonConfig,
    "[llm.NAME]": config.LLMConfig,
    "[platforms.telegram]": config.TelegramConfig,
    "[platforms.discord]": config.DiscordConfig,
    "[platforms.local]": config.LocalConfig,
    "[agents.ID]": config.AgentConfig,
    "[[routes]]": config.Route,
}
KEY_ENTRY = re.compile(r'^\.BR? (\w+)(?: \\fR)? "? ?\(', re.MULTILINE)
"""A key's entry: `.BR key " (type, default ...)"`; a value listed under a key has no "("."""


def documented_keys() -> dict[str, set[str]]:
    text = (MAN / "hermesd.toml.5").read_text()
    sections = re.split(r"^\.SH ", text, flags=re.MULTILINE)
    keys = {}
    for section in sections:
        title, _, body = section.partition("\n")
        if title in TABLES:
            entries = re.findall(r"^\.T[PQ]\n(.*)$", body, re.MULTILINE)  # .TQ: a second key
            keys[title] = {m[1] for line in entries if (m := KEY_ENTRY.match(line))}
    return keys


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_config_key_is_documented_under_its_table(table: str) -> None:
    in_code = {field.encode_name for field in msgspec.structs.fields(TABLES[table])}
    assert documented_keys()[table] == in_code


@pytest.mark.parametrize("width", ["80", "120"])
@pytest.mark.parametrize("page", sorted(p.name for p in MAN.iterdir()))
def test_page_renders_without_warnings(page: str, width: str) -> None:
    """As lintian checks an installed page (man --warnings, 120 columns) and as a terminal
    shows it (80)."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed (scripts/test installs it)")
    result = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(MAN / page)],
                            capture_output=True, text=True,
                            env={**os.environ, "LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": width})
    assert (result.returncode, result.stderr) == (0, "")
