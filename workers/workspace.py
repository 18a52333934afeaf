"""An agent's workspace, laid out like a Hermes profile so existing profiles work as-is:

    SOUL.md  memories/MEMORY.md  memories/USER.md  skills/<name>/SKILL.md  cron/  state.db  logs/

Every path a tool names goes through `resolve`: it must land, after following symlinks,
inside the workspace or one of the agent's shared paths (read-write only where the config
says "rw").  The kernel-level sandbox is a second line; this is the first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hermesd.protocol import SharedPathSpec

DEFAULT_SOUL = """\
You are a helpful, concise assistant. You remember what matters about the people you talk
to (use the memory tool), you write down procedures that worked (skills), and you say so
when you do not know something.
"""

MEMORY_LIMITS = {"memory": 2200, "user": 1375}  # characters, as Hermes profiles use
ENTRY_SEPARATOR = "\n§\n"


class PathDenied(Exception):
    """A tool asked for a path outside what this agent may touch."""


class Workspace:
    def __init__(self, root: Path, shared: tuple[SharedPathSpec, ...] = ()) -> None:
        self.root = root.resolve()
        self.shared = tuple((Path(s.path).resolve(), s.mode) for s in shared)

    def ensure(self) -> None:
        """Create what a fresh agent needs; never overwrite what a profile brought."""
        for directory in ("memories", "skills", "cron", "logs"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        defaults = {"SOUL.md": DEFAULT_SOUL, "memories/MEMORY.md": "", "memories/USER.md": ""}
        for name, text in defaults.items():
            path = self.root / name
            if not path.exists():
                path.write_text(text, encoding="utf-8")

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def skills_dir(self) -> Path:
        return self.root / "skills"

    def memory_file(self, target: str) -> Path:
        return self.root / "memories" / ("USER.md" if target == "user" else "MEMORY.md")

    def read(self, relative: str) -> str:
        """A workspace file's text, or "" if it does not exist yet."""
        try:
            return (self.root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def resolve(self, name: str, *, write: bool = False) -> Path:
        """The real path `name` (relative to the workspace, or absolute) refers to, if this
        agent may read it (or write it, with `write`).  Symlinks are followed before the
        check, so a link pointing out of the workspace is refused like a plain path."""
        if "\0" in name:
            raise PathDenied("path contains a NUL byte")
        candidate = Path(name) if os.path.isabs(name) else self.root / name
        real = candidate.resolve()  # follows every symlink, collapses ..
        if real.is_relative_to(self.root):
            return real
        for shared, mode in self.shared:
            if real.is_relative_to(shared):
                if write and mode != "rw":
                    raise PathDenied(f"{name}: shared path {shared} is read-only")
                return real
        raise PathDenied(f"{name}: outside this agent's workspace and shared paths")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` so that a crash leaves the old or the new text, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
