"""Import a Hermes profile directory (`~/.hermes/profiles/<name>`) as a new hermesd agent.

A hermesd workspace follows the Hermes profile layout (DESIGN §8), so most of an import is
copying files.  What is *not* copied matters as much: a profile also holds secrets
(`.env`, `auth.json`), logs, caches and Hermes' own settings, and none of them belong in
a workspace that a sandboxed worker (and possibly a model's tools) can read.  So the copy
is an allow-list, and everything else is named in the output as skipped.

The other half adds `[agents.ID]` to the daemon's TOML config.  The operator's file is
theirs: the edit appends text and leaves every existing byte (comments, layout) as it
was, is validated by the same loader hermesd uses before anything is written, and is
written atomically so a crash never leaves a half-written config for the next reload.

`hermesctl import-profile` (hermesd/ctl.py) parses arguments, talks to the daemon and
calls `import_profile`; everything here works on files only.
"""

from __future__ import annotations

import datetime
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomlkit

from hermesd import config

ImportRuntime = Literal["openai", "hermes", "echo"]

COPIED_AS_IS = ("SOUL.md", "memories", "skills", "cron")
"""What the worker reads from its workspace: the persona, curated memory, skills and cron
jobs.  Copied with their layout unchanged so the openai and hermes runtimes find them."""

HERMES_STATE = {"state.db": "hermes-state.db", "state.db-wal": "hermes-state.db-wal"}
"""Hermes' session database.  The worker keeps its own, differently shaped `state.db`, so
Hermes' is kept under another name for a later importer.  Its write-ahead log goes along
(renamed to match) because recent sessions may live only there until a checkpoint."""

KEPT_FOR_HERMES = ("config.yaml",)
"""Also copied for `runtime = "hermes"`: hermes-agent reads the profile's own settings
(model, toolsets, ...) from it; the runtime merges its safe settings in at start
(workers/hermes_home.py).  For the other runtimes it means nothing and is skipped."""

SKIP_REASONS = {
    ".env": "secrets",
    "auth.json": "secrets",
    "logs": "logs",
    "config.yaml": "Hermes settings; hermesd is configured in its TOML file",
    "state.db-shm": "SQLite shared memory, rebuilt on open",
}
"""Why well-known profile entries are left behind (anything else: not part of a workspace)."""

SKIP_ANYWHERE = {".env": "secrets", "auth.json": "secrets", "__pycache__": "cache",
                 ".cache": "cache", ".pytest_cache": "cache"}
"""Skipped at any depth: a skill directory can carry its own `.env` or bytecode cache."""

_EMBEDDED = "<embedded default>"


class ProfileError(Exception):
    """The import was refused or failed; the message is one line for the operator."""


@dataclass
class CopyPlan:
    """What `plan_copy` found: workspace-relative destination -> source file, and what is
    left behind.  Computed before anything is written, so a refusal changes nothing."""

    profile: Path
    files: dict[str, Path] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    """Summary lines, one per top-level entry copied."""
    skipped: list[str] = field(default_factory=list)
    """Summary lines, `NAME (reason)`, including symlinks not followed."""


@dataclass
class ImportResult:
    agent: str
    profile: str
    workspace: str
    config: str
    runtime: str
    llm: str | None
    copied: list[str]
    skipped: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- checks


def check_agent_id(agent_id: str) -> None:
    """Refuse an id the loader would refuse, before anything is copied or asked of the
    daemon: the id becomes a directory name and part of session keys."""
    if not config.AGENT_ID.fullmatch(agent_id):
        raise ProfileError(f'invalid agent id "{agent_id}": it must match '
                           f"^{config.AGENT_ID.pattern}$")


def check_profile(profile: Path) -> Path:
    """The profile as an absolute, resolved directory.  A directory with none of the
    entries a profile has is refused: importing `~` by mistake should not silently make an
    empty agent."""
    if not profile.is_dir():
        raise ProfileError(f"{profile}: not a directory")
    resolved = profile.resolve()
    known = (*COPIED_AS_IS, *HERMES_STATE, "config.yaml")
    if not any(os.path.lexists(resolved / name) for name in known):
        raise ProfileError(f"{profile}: not a Hermes profile (none of {', '.join(known)})")
    return resolved


def config_file(explicit: Path | None, daemon_status: dict[str, Any] | None) -> Path:
    """The config file to edit: `--config`, else the one the running daemon was started
    with (`status` -> `daemon`).  The daemon reports the path as it was given on its command
    line, so a relative one is resolved against the daemon's working directory, never
    hermesctl's (which would edit some other file)."""
    if explicit is not None:
        return explicit.absolute()
    assert daemon_status is not None
    reported = daemon_status["config"]
    if reported == _EMBEDDED:
        raise ProfileError("hermesd runs on its built-in configuration, so there is no file to "
                           "add the agent to: write a config file, restart hermesd with "
                           "--config FILE, and import again")
    path = Path(reported)
    if not path.is_absolute():
        try:
            path = Path(os.readlink(f"/proc/{daemon_status['pid']}/cwd")) / path
        except OSError:
            raise ProfileError(f'hermesd reports its config as the relative path "{reported}"; '
                               "give the file with --config") from None
    return path


def check_same_config(edited: Path, daemon_status: dict[str, Any]) -> None:
    """With --reload, the daemon must be reading the file we edit, or the reload would not
    start the agent (and would report success)."""
    running = config_file(None, daemon_status)
    try:
        same = os.path.samefile(edited, running)
    except OSError:
        same = False
    if not same:
        raise ProfileError(f"hermesd runs with {running}, not {edited}: a reload would not "
                           "start the agent (drop --reload or --config)")


# --------------------------------------------------------------------------- copying


def _reason(exc: Exception) -> str:
    """An OSError as one line: which file and why."""
    strerror = getattr(exc, "strerror", None)
    if not strerror:
        return str(exc)
    filename = getattr(exc, "filename", None)
    return f"{filename}: {strerror}" if filename else strerror


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def plan_copy(profile: Path, runtime: ImportRuntime = "openai") -> CopyPlan:
    """Walk the allow-listed entries of `profile` (resolved) without following symlinks
    out of it.  A symlink to a file inside the profile is copied as a regular file (the
    workspace must not depend on the profile staying where it is); one that points
    outside, dangles, or points at a directory (which could loop) is skipped and listed."""
    plan = CopyPlan(profile)
    as_is = (*COPIED_AS_IS, *KEPT_FOR_HERMES) if runtime == "hermes" else COPIED_AS_IS

    def visit(src: Path, rel: str, dest: str | None = None) -> int:
        """Add `src` (the profile's `rel`) as the workspace's `dest` (default `rel`);
        returns how many files it adds."""
        dest = dest or rel
        name = src.name
        if name in SKIP_ANYWHERE and rel not in as_is:
            plan.skipped.append(f"{rel} ({SKIP_ANYWHERE[name]})")
            return 0
        info = src.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(src)
            try:
                real = src.resolve(strict=True)
            except (OSError, RuntimeError):
                plan.skipped.append(f"{rel} -> {target} (dangling symlink)")
                return 0
            if not _inside(real, profile):
                plan.skipped.append(f"{rel} -> {target} (symlink out of the profile)")
                return 0
            if not real.is_file():
                plan.skipped.append(f"{rel} -> {target} (symlink to a directory or special file)")
                return 0
            plan.files[dest] = real
            return 1
        if stat.S_ISDIR(info.st_mode):
            plan.dirs.append(dest)
            return sum(visit(child, f"{rel}/{child.name}", f"{dest}/{child.name}")
                       for child in sorted(src.iterdir(), key=lambda p: p.name))
        if stat.S_ISREG(info.st_mode):
            plan.files[dest] = src
            return 1
        plan.skipped.append(f"{rel} (not a regular file)")
        return 0

    for entry in sorted(profile.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in as_is:
            count = visit(entry, name)
            is_dir = name in plan.dirs
            if count or is_dir:
                files = f"{count} file{'s' * (count != 1)}"
                plan.copied.append(f"{name}/ ({files})" if is_dir else name)
        elif name in HERMES_STATE:
            if visit(entry, name, HERMES_STATE[name]):
                plan.copied.append(f"{name} as {HERMES_STATE[name]}")
        else:
            reason = SKIP_REASONS.get(name, "not part of a hermesd workspace")
            plan.skipped.append(f"{name}{'/' if entry.is_dir() and not entry.is_symlink() else ''}"
                                f" ({reason})")
    return plan


def check_workspace(workspace: Path, profile: Path) -> None:
    """Never merge into or overwrite an existing workspace: it may hold another agent's
    memory.  An empty directory (say, made ahead by the operator) is fine."""
    if workspace.is_symlink() or workspace.exists() and (
            not workspace.is_dir() or any(workspace.iterdir())):
        raise ProfileError(f"workspace {workspace} already exists and is not empty")
    if _inside(workspace.resolve(), profile) or _inside(profile, workspace.resolve()):
        raise ProfileError(f"workspace {workspace} and profile {profile} overlap")


def copy_into_workspace(plan: CopyPlan, workspace: Path) -> None:
    """Copy the planned files into a hidden temporary directory beside `workspace`, then
    rename it into place: a failure half way leaves no half-filled workspace, and a
    workspace that appeared meanwhile is not overwritten (rename refuses a non-empty one).

    When run as root (a packaged hermesd runs as its own user), the new files are given
    to the owner of the directory they land in, or the worker could not write them."""
    parent = workspace.parent
    created = [p for p in [parent, *parent.parents] if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{workspace.name}.import-", dir=parent))
    except OSError as exc:
        raise ProfileError(f"cannot create {workspace}: {_reason(exc)}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # as a plain mkdir would, not mkdtemp's 0700
        for rel in plan.dirs:
            (staging / rel).mkdir(parents=True, exist_ok=True)
        for rel, src in plan.files.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, staging / rel, follow_symlinks=True)
        if os.geteuid() == 0:
            _chown_tree(staging, created)
        os.rename(staging, workspace)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ProfileError(f"cannot copy into {workspace}: {_reason(exc)}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _chown_tree(tree: Path, created: list[Path]) -> None:
    """Give `tree`, and the directories just created above it, to the owner of the
    nearest directory that existed before."""
    owner_dir = created[-1].parent if created else tree.parent
    info = owner_dir.stat()
    if info.st_uid == 0:
        return
    for path in created:
        os.chown(path, info.st_uid, info.st_gid)
    for root, dirs, files in os.walk(tree):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, info.st_uid, info.st_gid, follow_symlinks=False)


def remove_workspace(workspace: Path) -> None:
    """Undo `copy_into_workspace` when the config could not be written, leaving the empty
    directory if the operator had made one."""
    shutil.rmtree(workspace, ignore_errors=True)


# --------------------------------------------------------------------------- the config


def _printable(text: str) -> str:
    """A path as it may appear in a one-line TOML comment."""
    return "".join(c if c.isprintable() else "?" for c in text)


def agent_table(agent_id: str, runtime: ImportRuntime, llm: str | None, comment: str) -> str:
    """`# comment` + `[agents.ID]` as TOML text.  Rendered by tomlkit so ids and names are
    quoted correctly, and appended by text (see `add_agent`)."""
    table: dict[str, Any] = {"runtime": runtime}
    if llm is not None:
        table["llm"] = llm
    return f"# {_printable(comment)}\n" + tomlkit.dumps({"agents": {agent_id: table}})


def add_agent(text: str, agent_id: str, runtime: ImportRuntime, llm: str | None,
              comment: str, source: str) -> tuple[str, config.Config]:
    """The config `text` with `[agents.ID]` appended, and the validated result.

    Appended as text after the last byte rather than inserted through tomlkit's document
    model: tomlkit would add an `[agents]` header and move the table next to the other
    agents, which changes the layout the operator chose.  A table header at the end of a
    file is valid TOML wherever the other `[agents.*]` tables are.  The result is parsed by
    the daemon's own loader, so what is written is exactly what a reload will accept."""
    current = config.loads(text, source)
    if agent_id in current.agents:
        raise ProfileError(f"[agents.{agent_id}] already exists in {source}")
    block = agent_table(agent_id, runtime, llm, comment)
    new_text = text + ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "")
    new_text += block
    try:
        new = config.loads(new_text, source)
    except config.ConfigError as exc:
        raise ProfileError(f"the config would be invalid, nothing changed: {exc}") from None
    if agent_id not in new.agents:  # e.g. `agents` was an inline table; the loader would say
        raise ProfileError(f"cannot add [agents.{agent_id}] to {source}")
    return new_text, new


def write_atomic(path: Path, text: str, expected: str) -> None:
    """Replace `path` with `text`: a temporary file in the same directory, fsynced, given
    the old file's mode (and owner when root), renamed over it, directory fsynced.  A crash
    leaves the old or the new file, never a mix.  `expected` is what was read: if the file
    changed since, someone else is editing it and we stop rather than drop their edit."""
    real = path.resolve()  # replace the file a symlinked config points at, not the link
    info = real.stat()
    if real.read_text(encoding="utf-8") != expected:
        raise ProfileError(f"{path} changed while importing; nothing written, try again")
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fchmod(file.fileno(), stat.S_IMODE(info.st_mode))
            if os.geteuid() == 0:
                os.fchown(file.fileno(), info.st_uid, info.st_gid)
            os.fsync(file.fileno())
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(real.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- the whole import


def import_profile(profile: Path, agent_id: str, config_path: Path,
                   runtime: ImportRuntime = "openai", llm: str | None = None,
                   today: datetime.date | None = None) -> ImportResult:
    """Copy `profile` into the new agent's workspace and add `[agents.ID]` to
    `config_path`.  Every check (id, profile, config, workspace) runs before the first
    write; the workspace is copied before the config is written (so a reload never starts
    an agent on a half-copied workspace), and removed again if the config cannot be."""
    check_agent_id(agent_id)
    resolved = check_profile(profile)
    source = str(config_path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read {config_path}: {_reason(exc)}") from None
    date = (today or datetime.date.today()).isoformat()
    try:
        new_text, new = add_agent(text, agent_id, runtime, llm,
                                  f"imported from {resolved} on {date}", source)
    except config.ConfigError as exc:  # the current file is already invalid
        raise ProfileError(str(exc)) from None
    workspace = Path(new.agents[agent_id].workspace or "")
    for other, agent in new.agents.items():
        if other != agent_id and agent.workspace == str(workspace):
            raise ProfileError(f"workspace {workspace} belongs to agent {other}")
    check_workspace(workspace, resolved)
    try:
        plan = plan_copy(resolved, runtime)
    except OSError as exc:
        raise ProfileError(f"cannot read the profile: {_reason(exc)}") from None
    existed = workspace.is_dir()
    copy_into_workspace(plan, workspace)
    try:
        write_atomic(config_path, new_text, text)
    except BaseException as exc:
        remove_workspace(workspace)
        if existed:
            workspace.mkdir(exist_ok=True)
        if isinstance(exc, OSError):
            raise ProfileError(f"cannot write {config_path}: {_reason(exc)}") from None
        raise
    return ImportResult(agent=agent_id, profile=str(resolved), workspace=str(workspace),
                        config=str(config_path), runtime=runtime, llm=llm,
                        copied=plan.copied, skipped=plan.skipped)


def describe(result: ImportResult) -> str:
    """The human-readable report: what went where, and what was left behind and why."""
    lines = [f"imported {result.profile} as agent {result.agent}",
             f"  workspace {result.workspace}",
             f"  copied:  {', '.join(result.copied) or 'nothing'}"]
    lines += [f"  skipped: {item}" for item in result.skipped]
    llm = f', llm "{result.llm}"' if result.llm else ""
    lines.append(f'  config  {result.config}: added [agents.{result.agent}] '
                 f'(runtime "{result.runtime}"{llm})')
    return "\n".join(lines)
