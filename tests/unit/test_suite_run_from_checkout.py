"""The suite run from a checkout, as `tox -e conformance` and the demo run it (cwd = the repository root), with
xdist: the project's own tests/conftest.py, which pytest loads there too (an argument that is not a path makes it
read the conftest files of the current directory's test* folders), must change nothing. It once set
CONFORMANCE_PROBE_IMAGE=none in the controller, the workers inherited it, and the demo with `-n 2` measured R5 on
the suite's own image instead of the profile's real guest image."""

from __future__ import annotations

import json
from pathlib import Path

from test_error_verdict import run_suite

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
    env = {"PYTHONPATH": str(tmp_path), "SPY_FILE": str(spy_file)}
    proc, _bundle = run_suite(tmp_path, "", "-p", "probe_spy", "-n", "2", cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = [json.loads(line) for line in spy_file.read_text().splitlines()]
    assert sum(s["worker"] for s in seen) == 2 and len(seen) == 3, seen
    assert all(s["option"] is None and s["env"] is None for s in seen), seen
    assert "time per test group" not in proc.stdout  # the project's own summary stays out of the suite's output
