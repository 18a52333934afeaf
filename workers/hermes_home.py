"""Making hermes-agent (the `hermes` runtime) live in one agent's workspace.

hermes-agent keeps everything under its "home" (HERMES_HOME): SOUL.md, memories/,
skills/, cron/, logs/, its session database.  A workspace is laid out like that home, so
the worker points HERMES_HOME (and HOME, which the terminal tool's `bash -l` reads) at it.

Several hermes modules compute paths from the home once, when imported.  The zygote may
import them before any fork, in a `throwaway` home (`preimport`, and a warm-up turn: see
workers.runtimes.hermes.preload): a worker then calls `rehome`, which re-points those paths
at its own workspace.  Importing also writes files into the home (SOUL.md, skills/,
state.db...), which is why the zygote's is a temporary directory deleted right after.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

SESSION_DB = "hermes-state.db"
"""Hermes' own session database.  `state.db` is the worker's (a different schema); an
imported profile's Hermes database is renamed to this name (hermesd/profiles.py), so its
sessions stay readable by the runtime."""

SETTINGS: dict[str, dict[str, Any]] = {
    "agent": {"environment_probe": False},
    "security": {"tirith_enabled": False, "allow_lazy_installs": False},
    "lsp": {"enabled": False, "install_strategy": "off"},
    "model_catalog": {"enabled": False},
    "curator": {"enabled": False},
}
"""Settings forced into the workspace's config.yaml: each turns off something that would
download, install or run programs, probe the machine, or rewrite skills in the background
(hermesd.toml(5) lists them)."""

DEFAULTS: dict[str, dict[str, Any]] = {"model": {"context_length": 65536}}
"""Written only where the profile says nothing: without a context length hermes-agent
asks the provider for it with four requests every turn."""

ENVIRONMENT = {"TIRITH_ENABLED": "0", "HERMES_DISABLE_LAZY_INSTALLS": "1", "npm_config_yes": "false"}
"""The same switches as environment variables, read by code that never loads config.yaml;
and npx's: it runs only packages already installed (the browser tools fall back to
`npx agent-browser`, which would otherwise fetch agent-browser from npm)."""

PREIMPORTED = ("run_agent", "hermes_state", "hermes_cli.config", "hermes_cli.env_loader",
               "tools.approval", "tools.process_registry", "tools.checkpoint_manager",
               "cron.executions", "agent.auxiliary_client", "tools.skills_sync")


def enter(workspace: Path) -> None:
    """Become a process whose hermes home, home directory and working directory are the
    workspace, with the side-effect settings in place.  Call before the first turn."""
    os.environ["HERMES_HOME"] = str(workspace)
    os.environ["HOME"] = str(workspace)
    os.environ.update(ENVIRONMENT)
    os.chdir(workspace)
    write_settings(workspace / "config.yaml")
    if "run_agent" in sys.modules:  # imported by the zygote, with its temporary home
        rehome(workspace)
    _no_install_scripts()


def _no_install_scripts() -> None:
    """hermes' `ensure_dependency` runs its bundled install.sh (Node.js, agent-browser,
    Chromium: downloads) when the browser tools find no agent-browser, whatever
    `allow_lazy_installs` says: here it only answers whether the dependency is installed."""
    from hermes_cli import dep_ensure

    def installed(dep: str, interactive: bool = True) -> bool:
        check = dep_ensure._DEP_CHECKS.get(dep)
        return bool(check and check())

    dep_ensure.ensure_dependency = installed


def write_settings(path: Path) -> None:
    """Merge SETTINGS and DEFAULTS into config.yaml, keeping every other key of a profile's
    own file (its model, its toolsets...).  Unchanged files are not rewritten."""
    import yaml  # a dependency of hermes-agent, so of the `hermes` extra only

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    merged = {name: dict(section) if isinstance(section, dict) else section
              for name, section in config.items()}
    for name, values in SETTINGS.items():
        merged[name] = {**_section(merged, name, path), **values}
    for name, values in DEFAULTS.items():
        merged[name] = {**values, **_section(merged, name, path)}
    if merged != config:
        path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")


def _section(config: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    section = config.get(name) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: {name} must be a mapping, not {type(section).__name__}")
    return section


def rehome(home: Path) -> None:
    """Re-point what hermes modules computed from the zygote's home (every global `throwaway`
    found holding a path in it) at `home`, load what they loaded from it then (the profile's
    .env and its command allowlist) and forget which tools the warm-up found available (a
    toolset's check reads the home's .env)."""
    import hermes_state
    from agent import file_safety
    from hermes_cli.env_loader import load_hermes_dotenv
    from tools import file_operations
    from tools.approval import load_permanent_allowlist
    from tools.registry import invalidate_check_fn_cache

    for old, new in ((_zygote_home, home), (_zygote_home.resolve(), home.resolve())):
        for module_name, name in _home_globals:
            module = sys.modules[module_name]
            setattr(module, name, _moved(getattr(module, name), str(old), str(new)))
    hermes_state.DEFAULT_DB_PATH = home / SESSION_DB  # renamed, not only moved
    # the file tools' write deny-list, built at import from the zygote's HOME and home
    file_operations.WRITE_DENIED_PATHS = file_safety.build_write_denied_paths(str(home))
    file_operations.WRITE_DENIED_PREFIXES = file_safety.build_write_denied_prefixes(str(home))
    load_hermes_dotenv(hermes_home=home)
    load_permanent_allowlist()
    invalidate_check_fn_cache()  # the warm-up's verdicts (is a web backend set?...) were the zygote's


_zygote_home = Path("/nonexistent")
_home_globals: list[tuple[str, str]] = []
"""(module, global name) of every module global that held a path in the zygote's
throwaway home when it was deleted: found by a scan rather than listed, since hermes-agent
computes such paths at import in dozens of modules (skills, cron, checkpoints...), and one
left behind points a worker's tool at a directory that no longer exists."""


def _holds(value: object, prefix: str, depth: int = 4) -> bool:
    """Whether `value` (a str, a path, or containers of them, keys included, down to
    `depth` levels) names `prefix`."""
    if isinstance(value, str | PurePath):
        return prefix in str(value)
    if depth == 0:
        return False
    if isinstance(value, dict):
        return any(_holds(k, prefix, depth - 1) or _holds(v, prefix, depth - 1)
                   for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds(item, prefix, depth - 1) for item in value)
    return False


def _moved(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every string and path it holds.  Caches and
    markers are emptied instead: a dict keyed by such paths (a config cache would serve
    the zygote's config.yaml under the worker's path) loses every entry, and a set (like
    "homes whose .env was loaded") its entries naming `old`.  Lists and dicts are changed
    in place, since others may hold the same object (a tool's schema is also in hermes'
    tool registry)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, PurePath):
        return type(value)(str(value).replace(old, new))
    if isinstance(value, tuple | frozenset):
        return type(value)(_moved(item, old, new) for item in value)
    if isinstance(value, list):
        value[:] = [_moved(item, old, new) for item in value]
    elif isinstance(value, set):
        value.difference_update([item for item in value if _holds(item, old)])
    elif isinstance(value, dict):
        if any(_holds(key, old) for key in value):
            value.clear()
        else:
            for key, item in value.items():
                value[key] = _moved(item, old, new)
    return value


def _find_home_globals(home: Path) -> list[tuple[str, str]]:
    prefixes = {str(home), str(home.resolve())}
    found = []
    for module_name, module in list(sys.modules.items()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if not isinstance(value, ModuleType) and any(_holds(value, p) for p in prefixes):
                found.append((module_name, name))
    return found


LOADED_BY_A_TURN = ("openai.types", "openai.resources", "httpcore", "hermes_logging")
"""What hermes-agent imports only when it builds an agent or runs a first turn (the
OpenAI SDK and its pydantic models, ~1,000 modules): imported in the zygote too, or each
worker would hold its own copy (measured: ~53 MiB of private memory per worker after a
turn instead of ~30)."""


def _import_all(package: str) -> None:
    """`package` and every module under it that imports cleanly (one that needs an optional
    dependency that is not installed is left out)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{package}."):
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001  an optional extra's module: workers do without it too
            continue


@contextmanager
def throwaway() -> Iterator[Path]:
    """A temporary hermes home for the zygote's import and warm-up turn (both write into
    their home: SOUL.md, skills/, a session database...), deleted afterwards, with the
    environment as it was."""
    global _zygote_home, _home_globals
    saved = {name: os.environ.get(name) for name in ("HERMES_HOME", *ENVIRONMENT)}
    with tempfile.TemporaryDirectory(prefix="hermesd-hermes-") as home:
        os.environ["HERMES_HOME"] = home
        os.environ.update(ENVIRONMENT)
        write_settings(Path(home) / "config.yaml")
        try:
            yield Path(home)
        finally:  # even after a failed warm-up: what it imported is there to stay
            _zygote_home, _home_globals = Path(home), _find_home_globals(Path(home))
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def preimport() -> None:
    """Import hermes-agent (in the zygote, inside `throwaway`), so that workers share its
    modules instead of each importing them (half a second and ~50 MiB each)."""
    for name in PREIMPORTED:
        __import__(name)
    for package in LOADED_BY_A_TURN:
        _import_all(package)
