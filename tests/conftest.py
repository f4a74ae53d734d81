"""Fixtures shared by the project's own tests.

Integration tests share one sandbox cloud per session (it takes about a minute to start). A sandbox that is
already running (e.g. `tox -e sandbox -- up` in another terminal) is reused and left running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
ZUUL_TESTS = TESTS_DIR / "zuul"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers/: `from helpers import suite`

from helpers import suite  # noqa: E402


def names_a_path_in(config, folder: Path) -> bool:
    """Whether one of the session's arguments is `folder` or a path inside it (node ids reduced to their file)."""
    named = [Path(config.invocation_params.dir, str(arg).split("::")[0]).resolve() for arg in config.args]
    return any(path == folder or folder in path.parents for path in named)


def pytest_ignore_collect(collection_path, config):
    """tests/zuul/ starts a real Zuul (`tox -e zuul`): `pytest tests` leaves it out unless it is named."""
    if collection_path == ZUUL_TESTS and not names_a_path_in(config, ZUUL_TESTS):
        return True
    return None


def runs_these_tests(config) -> bool:
    """Whether the session collects the project's tests. pytest also loads this file in the suite's own runs from
    a checkout (`pytest --pyargs conformance.checks`, `tox -e conformance`, the demo): an argument that is not a
    path makes pytest read the conftest files of the current directory's test* folders. There it must change
    nothing (it once set CONFORMANCE_PROBE_IMAGE=none, which the demo's xdist workers inherited: R5 on the
    suite's own image instead of the profile's)."""
    return names_a_path_in(config, TESTS_DIR)


def pytest_configure(config):
    if not runs_these_tests(config):
        return
    # Every run of the suite these tests start (they inherit this environment) probes R5/R11 on the suite's own
    # image, which the sandbox's fake nodes answer for in seconds, not on the sandbox's real guest image (minutes
    # under QEMU TCG). tests/integration/test_real_guests.py boots the real guest, and so does any test that
    # passes --probe-image itself.
    os.environ.setdefault("CONFORMANCE_PROBE_IMAGE", "none")


@pytest.fixture(scope="session")
def sandbox():
    """The running sandbox cloud (sandbox.api.Sandbox), started for this session unless already up."""
    from sandbox.api import Sandbox

    sb = Sandbox()
    started_here = False
    if not sb.is_running():
        sb.up()
        started_here = True
    try:
        yield sb
    finally:
        if started_here and not os.environ.get("SANDBOX_KEEP"):
            table = sb.stack.table.load()
            sb.down()
            # `down` must leave nothing: no process it started, no state dir.
            from sandbox.processes import is_alive

            survivors = [name for name, proc in table.items() if is_alive(proc)]
            assert not survivors, f"sandbox down left processes running: {survivors}"
            assert not sb.layout.root.exists(), f"sandbox down left {sb.layout.root}"
            # Nor anything of the real host: guests' QEMU processes, the bridge and its taps, loop devices.
            from sandbox import real_host

            assert real_host.guest_processes(sb.layout) == [], "sandbox down left QEMU guests running"
            assert not real_host.bridge_exists(sb.layout.bridge), f"sandbox down left bridge {sb.layout.bridge}"
            loops = subprocess.run(
                ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"], capture_output=True, text=True
            ).stdout
            assert str(sb.layout.root) not in loops, f"sandbox down left loop devices: {loops}"


@pytest.fixture
def run_suite(sandbox, tmp_path):
    """Run the conformance suite through its real command line against the sandbox (helpers.suite.run).

    Returns a function: run_suite(*pytest_args, profile="sandbox", zuul="sandbox-zuul", ci="sandbox-ci",
    env=None, timeout=1800, report_dir=None) -> subprocess.CompletedProcess (text, stdout and stderr captured).
    """

    def run(*args, report_dir=None, **options):
        return suite.run(sandbox.clouds_yaml, report_dir or tmp_path / "reports", *args, **options)

    return run


_GROUP_SECONDS: dict[str, float] = defaultdict(float)  # test module -> setup + call + teardown seconds


def pytest_runtest_logreport(report):
    _GROUP_SECONDS[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    """Where a run's time went, per test module (a session fixture's start, e.g. the sandbox's, counts for the
    module of the first test that needs it): .ci/run is watched against its time budget."""
    if not _GROUP_SECONDS or not runs_these_tests(terminalreporter.config):
        return
    total = sum(_GROUP_SECONDS.values())
    terminalreporter.write_sep("-", f"time per test group ({total / 60:.1f} min in tests)")
    for group, seconds in sorted(_GROUP_SECONDS.items(), key=lambda item: -item[1]):
        if seconds >= 1:
            terminalreporter.write_line(f"{seconds:8.1f} s  {group}")
