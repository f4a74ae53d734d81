"""The suite run from a checkout, as `tox -e conformance` and the demo run it (cwd = the repository root), with
xdist: the project's own tests/conftest.py, which pytest loads there too (an argument that is not a path makes it
read the conftest files of the current directory's test* folders), must change nothing. It once set
CONFORMANCE_PROBE_IMAGE=none in the controller, the workers inherited it, and the demo with `-n 2` measured R5 on
the suite's own image instead of the profile's real guest image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_error_verdict import clouds_yaml

UNIT = Path(__file__).resolve().parent
REPO_ROOT = UNIT.parents[1]

# Each process of the run (controller, workers) writes what it sees of the probe image option.
SPY = """
import json, os, sys
def pytest_configure(config):
    seen = {"worker": hasattr(config, "workerinput"), "option": config.getoption("conformance_probe_image"),
            "env": os.environ.get("CONFORMANCE_PROBE_IMAGE")}
    with open(os.environ["SPY_FILE"], "a") as out:
        out.write(json.dumps(seen) + "\\n")
"""


def test_tests_conftest_changes_nothing_in_a_suite_run_from_the_checkout(tmp_path):
    (tmp_path / "probe_spy.py").write_text(SPY)
    spy_file = tmp_path / "seen.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONFORMANCE_", "OS_"))}
    env.update(
        OS_CLIENT_CONFIG_FILE=str(clouds_yaml(tmp_path)),
        PYTHONPATH=os.pathsep.join([str(UNIT), str(tmp_path)]),
        SPY_FILE=str(spy_file),
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "fake_cloud_plugin",
        "-p",
        "probe_spy",
        "--pyargs",
        "conformance.checks",
        "-k",
        "test_node_flavor",
        "--zuul-cloud",
        "zuul",
        "--ci-cloud",
        "ci",
        "--report-dir",
        str(tmp_path / "reports"),
        "-n",
        "2",
    ]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = [json.loads(line) for line in spy_file.read_text().splitlines()]
    assert sum(s["worker"] for s in seen) == 2 and len(seen) == 3, seen
    assert all(s["option"] is None and s["env"] is None for s in seen), seen
    assert "time per test group" not in proc.stdout  # the project's own summary stays out of the suite's output
