"""The plugin's parts in real pytest runs (subprocesses, like tox): with the main part (the `conformance` entry
point) each is registered and shares the one state object; loaded without it, each stops the run with one line
saying it needs the main part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import plugin, state

PARTS = plugin.pytest_plugins
# An option of each part: registered, so the part's pytest_addoption ran.
OPTIONS = {
    "conformance.parts.deadline": "conformance_deadline",
    "conformance.parts.dynamic": "conformance_burst_size",
    "conformance.parts.metrics": "conformance_statsd_host",
    "conformance.parts.report": "sign_key",
}

WITH_MAIN = f"""
import sys

from conformance import state


def test_every_part_is_registered_and_shares_the_state(pytestconfig):
    manager = pytestconfig.pluginmanager
    main = sys.modules[state.MAIN_PART]
    assert manager.is_registered(main)
    for part, option in {OPTIONS!r}.items():
        assert manager.is_registered(sys.modules[part]), part
        pytestconfig.getoption(option)  # ValueError if the part's options were not added
    run = state.of(pytestconfig)
    assert run is state.of(pytestconfig)
    # Not the conformance checks: every part is inert, and the dynamic part named the run all the same.
    assert not run.active and not run.runs_checks and run.prepared
    assert run.run_prefix.startswith("conformance-") and run.lease is None
    assert run.session is None and run.deadline is None and run.bundle is None and run.statsd is None
"""


def pytest_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFORMANCE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_entry_point_registers_every_part(tmp_path):
    assert set(PARTS) == set(OPTIONS)
    (tmp_path / "test_parts.py").write_text(WITH_MAIN)
    proc = pytest_run(tmp_path, "-q", "test_parts.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


@pytest.mark.parametrize("part", PARTS)
def test_a_part_alone_says_in_one_line_that_it_needs_the_main_part(tmp_path, part):
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    pass\n")
    proc = pytest_run(tmp_path, "-p", "no:conformance", "-p", part, "--co", "-q", "test_plain.py")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert errors == [
        f"ERROR: {part} is a part of the conformance plugin and needs its main part, "
        f"{state.MAIN_PART} (the `conformance` entry point, which registers every part): do not "
        "load it alone or with -p no:conformance"
    ], errors


def test_without_the_plugin_a_plain_run_is_untouched(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    pass\n")
    proc = pytest_run(tmp_path, "-p", "no:conformance", "-q", "test_plain.py")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert not (tmp_path / "reports").exists()
