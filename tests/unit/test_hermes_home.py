"""config.yaml as the hermes runtime leaves it: its side-effect settings in, the profile's
own settings kept."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers import hermes_home

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the hermes extra")


def test_settings_are_merged_into_a_profiles_own_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  default: my-model\n  context_length: 8192\n"
                    "security:\n  tirith_enabled: true\n  redact_secrets: true\n")
    hermes_home.write_settings(path)
    config = yaml.safe_load(path.read_text())
    assert config["model"] == {"default": "my-model", "context_length": 8192}
    assert config["security"] == {"tirith_enabled": False, "redact_secrets": True,
                                  "allow_lazy_installs": False}
    assert config["curator"] == {"enabled": False}


def test_a_config_that_is_not_a_mapping_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        hermes_home.write_settings(path)
    assert path.read_text() == "- a list\n"


ENSURE_BROWSER = """
import sys
from pathlib import Path
from workers import hermes_home
hermes_home.enter(Path(sys.argv[1]))
from hermes_cli.dep_ensure import ensure_dependency
print(ensure_dependency("browser", interactive=False))
"""


def test_a_worker_never_runs_hermes_install_script_for_the_browser(tmp_path: Path) -> None:
    if importlib.util.find_spec("hermes_cli") is None:
        pytest.skip("hermes-agent is not installed (pip install hermesd[hermes])")
    # in a child process: `enter` changes the environment and working directory; its
    # proxy is a closed port on 127.0.0.1, so a regression fails without reaching the network
    proxy = "http://127.0.0.1:9"
    env = {**os.environ, **{name: proxy for name in ("http_proxy", "https_proxy", "HTTP_PROXY",
                                                      "HTTPS_PROXY", "npm_config_proxy")}}
    done = subprocess.run([sys.executable, "-c", ENSURE_BROWSER, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"  # agent-browser is not installed, and stays so
    assert not (tmp_path / "node").exists() and not (tmp_path / "node_modules").exists()
