"""`runtime = "python:<module>:<factory>"`: accepted as written, malformed ones located."""

from __future__ import annotations

import pytest

from hermesd.config import ConfigError, loads


def _runtime_error(value: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads(f'[agents.a]\nruntime = "echo"\n\n[agents.b]\nruntime = "{value}"\n', "hermesd.toml")
    return info.value


def test_python_runtime_reaches_the_worker_spec_unchanged():
    config = loads('[agents.a]\nruntime = "python:my_pkg.agents:make_runtime"\n')
    assert config.worker_spec("a").runtime == "python:my_pkg.agents:make_runtime"


@pytest.mark.parametrize("value", [
    "python:", "python:mod", "python:mod:", "python::make", "python:my-pkg:make",
    "python:pkg..mod:make", "python:mod:make:extra", "python:mod:make()",
])  # fmt: skip
def test_malformed_python_runtime_names_file_line_and_form(value: str):
    error = _runtime_error(value)
    assert (error.path, error.line, error.key) == ("hermesd.toml", 5, "agents.b.runtime")
    assert error.message == ('expected "python:MODULE:FACTORY" (a dotted module name and the '
                             f'name of a function in it), got "{value}"')
