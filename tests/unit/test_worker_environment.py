"""What workers keep of the daemon's environment (the zygote cuts it down once, for all)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os
from hermesd.zygote import keep_harmless_environment
keep_harmless_environment()
print(sorted(os.environ), flush=True)
os.system("env -0")  # the C environ (unsetenv'd too?), as a child the worker starts sees it
"""


def test_only_harmless_variables_are_kept_in_python_and_c_environments() -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path),
           "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "https_proxy": "http://proxy:3128",
           "NO_PROXY": "localhost", "DISCORD_TOKEN": "secret", "OPENROUTER_API_KEY": "sk-x",
           "NOTIFY_SOCKET": "/run/systemd/notify"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, check=True)
    python, _, c = result.stdout.partition("\n")
    kept = ["LANG", "LC_TIME", "NO_PROXY", "PATH", "TZ", "https_proxy"]
    assert python == repr(kept)
    child = {entry.partition("=")[0] for entry in c.split("\0") if entry}
    assert set(kept) <= child and not child & {"PYTHONPATH", "DISCORD_TOKEN",
                                               "OPENROUTER_API_KEY", "NOTIFY_SOCKET"}
