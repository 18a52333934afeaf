"""Shared fixtures: a real hermesd in a short temp dir, torn down with everything it started."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import Daemon

os.environ.pop("NOTIFY_SOCKET", None)


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    # AF_UNIX paths are limited to 108 bytes, so stay short rather than under tmp_path.
    root = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    instance = Daemon(root)
    spawned: list[psutil.Process] = []
    try:
        yield instance
    finally:
        if instance.process is not None and instance.process.poll() is None:
            spawned = instance.children()
        instance.stop()
        for process in spawned:
            try:
                process.kill()
            except psutil.Error:
                pass
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write(f"\n----- hermesd log ({instance.log_path}) -----\n{instance.log()}\n")
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
