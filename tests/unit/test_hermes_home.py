"""config.yaml as the hermes runtime leaves it: its side-effect settings in, the profile's
own settings kept."""

from __future__ import annotations

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
