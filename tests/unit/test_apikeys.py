"""Where the daemon finds an agent's API key, and what it says when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermesd import log
from hermesd.apikeys import ApiKey, resolve
from hermesd.protocol import LLMSpec

KEY = "sk-test-secret-123"


def test_key_from_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(f"  {KEY}\n")
    assert resolve(LLMSpec(base_url="u", model="m", api_key_file=str(path))) == ApiKey(KEY)


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", f"{KEY}\n")
    assert resolve(LLMSpec(base_url="u", model="m", api_key_env="TEST_LLM_KEY")) == ApiKey(KEY)


def test_a_key_read_is_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-masked-in-logs-456")
    resolve(LLMSpec(base_url="u", model="m", api_key_env="TEST_LLM_KEY"))
    assert log.redact("HTTP 401: bad key sk-masked-in-logs-456") == "HTTP 401: bad key [redacted]"


def test_no_key_configured() -> None:
    assert resolve(LLMSpec(base_url="u", model="m")) == ApiKey()
    assert resolve(None) == ApiKey()


def test_missing_env_key_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    key = resolve(LLMSpec(base_url="u", model="m", api_key_env="TEST_LLM_KEY"))
    assert key == ApiKey(problem="environment variable TEST_LLM_KEY is not set or empty")


def test_missing_or_empty_key_file(tmp_path: Path) -> None:
    missing = resolve(LLMSpec(base_url="u", model="m", api_key_file=str(tmp_path / "nope")))
    assert missing.value is None and "cannot read API key file" in (missing.problem or "")
    (tmp_path / "empty").write_text("\n")
    empty = resolve(LLMSpec(base_url="u", model="m", api_key_file=str(tmp_path / "empty")))
    assert empty.value is None and "is empty" in (empty.problem or "")
