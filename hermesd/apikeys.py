"""An agent's LLM API key, read by the daemon when it spawns the agent's worker.

Workers never read keys themselves: their environment is cut down to harmless variables
(so one agent cannot read another's key, or the bot tokens, from it), and after a
privilege drop they could not read a root-only key file anyway.  The daemon reads the key
named by the agent's own `api_key_env` or `api_key_file` and hands that one key to the
zygote with the spawn request; it is never part of the `WorkerSpec`, which is compared,
logged and shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from hermesd import log
from hermesd.protocol import LLMSpec


class ApiKey(NamedTuple):
    value: str | None = None
    """None when no key is configured (a local server), or when it could not be read."""
    problem: str | None = None
    """Why a configured key could not be read; the worker's turns then say the key is
    missing (as a failed model call does), with this as the detail in the log."""


def resolve(llm: LLMSpec | None) -> ApiKey:
    """The key from `api_key_env` (in the daemon's environment) or else `api_key_file`."""
    if llm is None or (llm.api_key_env is None and llm.api_key_file is None):
        return ApiKey()
    problems = []
    if llm.api_key_env is not None:
        key = os.environ.get(llm.api_key_env, "").strip()
        if key:
            return _found(key)
        problems.append(f"environment variable {llm.api_key_env} is not set or empty")
    if llm.api_key_file is not None:
        try:
            key = Path(llm.api_key_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"cannot read API key file {llm.api_key_file}: {exc}")
        else:
            if key:
                return _found(key)
            problems.append(f"API key file {llm.api_key_file} is empty")
    return ApiKey(problem="; ".join(problems))


def _found(key: str) -> ApiKey:
    log.add_secret(key)  # whatever echoes it later (a provider's error body) is masked
    return ApiKey(value=key)
